// destroy — end sessions on every exit path; they hold scarce server capacity.
//
// Shows the four ways, from the most to the least structured:
//   1. lens::with_session: the session is destroyed when the body returns, throws or is
//      cancelled, and the body's exception is rethrown afterwards;
//   2. lens::scoped_session: RAII for sessions whose life does not fit one scope;
//      `co_await s.destroy()` when done;
//   3. session.destroy(): the `session.destroy` WebSocket event; the channel then fails
//      every request with errc::session_gone and stops reconnecting;
//   4. client.destroy_session(id): POST lens/sessions/destroy; idempotent.
// A session abandoned without any of these keeps a lens runner until the server
// refuses new sessions ("Failed to allocate lens runner").
//
// Run:  build/bin/example_destroy   (in-process emulator)
//       ARCHETYPE_API_KEY=... build/bin/example_destroy --real --lens lns-...
#include "example_support.hpp"

#include <lens/client.hpp>
#include <lens/scoped_session.hpp>
#include <lens/session.hpp>

#include <iostream>
#include <stdexcept>

namespace {

lens::task<bool> is_stale(lens::client& client, const std::string& id)
{
    lens::session_record r = co_await client.get_session(id);
    std::cout << "  " << id << " is now " << lens::to_string(r.status) << '\n';
    co_return r.status == lens::session_status::stale;
}

} // namespace

lens::task<void> destroy(example::environment& env)
{
    lens::client client = env.make_client();
    const std::string lens_id = env.lens(lens::emulator::builtin::query);

    std::cout << "1. with_session, the body throws\n";
    std::string id;
    try {
        co_await lens::with_session(client, lens_id, [&](const lens::session_record& r) -> lens::task<void> {
            id = r.session_id;
            throw std::runtime_error("something went wrong in the body");
            co_return;
        });
    } catch (const std::runtime_error& e) {
        std::cout << "  caught after the destroy: " << e.what() << '\n';
    }
    example::expect(co_await is_stale(client, id), "with_session destroyed the session although the body threw");

    std::cout << "2. scoped_session\n";
    {
        auto owned = co_await lens::scoped_session::create(client, lens_id);
        id = owned.id();
        co_await owned.destroy(); // idempotent; without it the destructor destroys in the background
    }
    example::expect(co_await is_stale(client, id), "scoped_session::destroy destroyed the session");

    std::cout << "3. session.destroy over the WebSocket\n";
    {
        auto owned = co_await lens::scoped_session::create(client, lens_id);
        id = owned.id();
        lens::session channel = co_await client.open_session(owned.record());
        co_await channel.destroy();
        try {
            co_await channel.validate();
            example::expect(false, "a destroyed session refuses requests");
        } catch (const lens::error& e) {
            std::cout << "  the channel afterwards: " << e.what() << '\n';
            example::expect(e.code() == lens::errc::session_gone, "errc::session_gone after destroy");
        }
        co_await owned.destroy(); // harmless: destroying a destroyed session is a no-op for the server
    }
    example::expect(co_await is_stale(client, id), "session.destroy destroyed the session");

    std::cout << "4. client.destroy_session (REST), twice\n";
    lens::session_record created = co_await client.create_session(lens_id);
    lens::session_record gone = co_await client.destroy_session(created.session_id);
    lens::session_record again = co_await client.destroy_session(created.session_id);
    std::cout << "  " << gone.session_id << ": " << lens::to_string(gone.status) << ", then "
              << lens::to_string(again.status) << '\n';
    example::expect(again.status == lens::session_status::stale, "destroy_session is idempotent");
}

int main(int argc, char** argv)
{
    return example::run(argc, argv, destroy);
}
