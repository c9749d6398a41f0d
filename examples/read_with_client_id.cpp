// read_with_client_id — drain a session's WebSocket mailbox with `session.read`.
//
// Shows: session.read() with the client id set in session_options, and
// session.read("other-id"): each client id is an independent cursor on the mailbox,
// so a second reader (a logger, an archiver) sees every message from the start while
// a reader that already drained it gets nothing twice. Only lenses that write to the
// WebSocket mailbox produce messages (the emulator's `lns-emu-mailbox` echoes what
// `session.update` pushes); SSE lenses answer with an empty read.
//
// Run:  build/bin/example_read_with_client_id   (in-process emulator)
//       ARCHETYPE_API_KEY=... build/bin/example_read_with_client_id --real --lens lns-...
#include "example_support.hpp"

#include <lens/client.hpp>
#include <lens/scoped_session.hpp>
#include <lens/session.hpp>

#include <boost/json/serialize.hpp>

#include <iostream>

namespace {

void print(const lens::read_result& r)
{
    std::cout << "read as \"" << r.client_id << "\": " << r.messages.size() << " message(s)\n";
    for (const auto& m : r.messages)
        std::cout << "  " << m.type << " " << boost::json::serialize(m.data) << '\n';
}

boost::json::value reading(int n)
{
    boost::json::object o;
    o["sensor"] = "thermometer-1";
    o["celsius"] = 20 + n;
    return o;
}

} // namespace

lens::task<void> read_with_client_id(example::environment& env)
{
    lens::client client = env.make_client();
    co_await lens::with_session(client, env.lens(lens::emulator::builtin::mailbox),
                                [&](const lens::session_record& record) -> lens::task<void> {
        lens::session_options options;
        options.client_id = "dashboard"; // what read() without an id uses
        lens::session channel = co_await client.open_session(record, options);

        for (int n = 0; n < 3; ++n)
            co_await channel.update(reading(n)); // the mailbox lens echoes each into the mailbox

        lens::read_result first = co_await channel.read();
        print(first);
        lens::read_result again = co_await channel.read();
        print(again);
        lens::read_result archiver = co_await channel.read("archiver");
        print(archiver);

        example::expect(first.client_id == "dashboard", "the reply names our client id");
        example::expect(again.messages.empty(), "a drained cursor gives nothing twice");
        example::expect(archiver.messages.size() >= first.messages.size(),
                        "a new client id replays the mailbox from the start");
        if (env.emulated())
            example::expect(first.messages.size() == 4, "the emulator's mailbox: 'session started' and 3 echoes");
    });
}

int main(int argc, char** argv)
{
    return example::run(argc, argv, read_with_client_id);
}
