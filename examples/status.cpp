// status — ask a session how it is, over REST and over its WebSocket.
//
// Shows: client.get_session (GET lens/sessions/metadata), session.status() (the
// `session.status` WebSocket event), client.list_sessions(), and lens::session_status:
// the server spells one state several ways ("SESSION_STATUS_RUNNING", "3",
// "LensSessionStatus.SESSION_STATUS_RUNNING"); lens normalises them and keeps the raw text.
// lens::with_session destroys the session when the body returns or throws.
//
// Run:  build/bin/example_status   (in-process emulator)
//       ARCHETYPE_API_KEY=... build/bin/example_status --real --lens lns-...
#include "example_support.hpp"

#include <lens/client.hpp>
#include <lens/scoped_session.hpp>
#include <lens/session.hpp>

#include <algorithm>
#include <iostream>

namespace {

void print(std::string_view via, const lens::session_record& r)
{
    std::cout << via << ": " << r.session_id << " is " << lens::to_string(r.status) << " (sent as \""
              << r.status_raw << "\"), " << r.num_events << " events, " << r.num_active_connections
              << " connection(s)\n";
}

} // namespace

lens::task<void> status(example::environment& env)
{
    lens::client client = env.make_client();
    std::string id;

    co_await lens::with_session(client, env.lens(lens::emulator::builtin::query),
                                [&](const lens::session_record& record) -> lens::task<void> {
        id = record.session_id;
        print("sessions/create", record);

        // REST: GET lens/sessions/metadata?session_id=...
        lens::session_record rest = co_await client.get_session(record.session_id);
        print("sessions/metadata", rest);
        example::expect(rest.status == lens::session_status::running, "REST reports the session running");

        // WebSocket: session.status (the one reply without an envelope).
        lens::session channel = co_await client.open_session(record);
        lens::session_record ws = co_await channel.status();
        print("session.status", ws);
        example::expect(ws.status == lens::session_status::running, "the WebSocket reports the session running");

        // Every session of this key, e.g. to find ones a crashed program left behind.
        auto all = co_await client.list_sessions();
        const bool listed = std::any_of(all.begin(), all.end(),
                                        [&](const lens::session_record& r) { return r.session_id == id; });
        std::cout << "sessions listed: " << all.size() << (listed ? " (ours among them)\n" : "\n");
        example::expect(listed, "sessions/metadata lists our session");
    });

    // with_session destroyed it on the way out: the record now says so.
    lens::session_record after = co_await client.get_session(id);
    print("after with_session", after);
    example::expect(after.status == lens::session_status::stale, "a destroyed session is stale");
}

int main(int argc, char** argv)
{
    return example::run(argc, argv, status);
}
