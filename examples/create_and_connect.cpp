// create_and_connect — create a session of a lens and open its WebSocket control channel.
//
// Shows: lens::client (REST) creating a session, lens::scoped_session making sure the
// session is destroyed on every exit path, and client.open_session(record) connecting
// the control channel (it shares the client's endpoint: one TLS context, one key).
//
// Run:  build/bin/example_create_and_connect   (in-process emulator)
//       ARCHETYPE_API_KEY=... build/bin/example_create_and_connect --real --lens lns-...
#include "example_support.hpp"

#include <lens/client.hpp>
#include <lens/scoped_session.hpp>
#include <lens/session.hpp>

#include <iostream>

lens::task<void> create_and_connect(example::environment& env)
{
    lens::client client = env.make_client();

    // POST lens/sessions/create. The scoped_session destroys the server-side session
    // when we call destroy(), or (as a last resort) when it is dropped without it.
    auto owned = co_await lens::scoped_session::create(client, env.lens(lens::emulator::builtin::query));
    const lens::session_record& record = owned.record();
    std::cout << "created " << record.session_id << " of " << record.lens_id << "\n"
              << "  status " << lens::to_string(record.status) << " (sent as \"" << record.status_raw << "\")\n"
              << "  control channel at " << record.session_endpoint << '\n';

    // Connect the WebSocket: open_session returns once the upgrade succeeded.
    lens::session channel = co_await client.open_session(record);
    std::cout << "connected: " << std::boolalpha << channel.is_connected()
              << ", client id " << channel.client_id() << '\n';
    example::expect(channel.is_connected(), "the control channel is connected");

    // One round trip over it: the session's own view of itself.
    lens::session_record now = co_await channel.status();
    std::cout << "session.status: " << lens::to_string(now.status) << " (sent as \"" << now.status_raw << "\"), "
              << now.num_active_connections << " active connection(s)\n";
    example::expect(now.session_id == record.session_id, "session.status describes our session");
    example::expect(now.status == lens::session_status::running, "the session is running");
    example::expect(!now.raw.contains("api_key"), "records never carry the API key");

    channel.close();
    co_await owned.destroy();
    std::cout << "destroyed " << record.session_id << '\n';
}

int main(int argc, char** argv)
{
    return example::run(argc, argv, create_and_connect);
}
