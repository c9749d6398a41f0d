// sensor_update — push sensor readings into a running session with `session.update`.
//
// Shows: session.update(json) (sent as `{"type": "data.json", "event_data": reading}`),
// the pattern of the official SDK's sensor-log example for lenses without an input
// stream: ten readings, then the results. Updates are not idempotent, so lens never
// resends one after a connection loss (the caller decides: see deadlines_and_reconnects.cpp).
//
// Where results appear depends on the lens: the emulator's `lns-emu-mailbox` echoes each
// reading into the WebSocket mailbox (read back with session.read); a lens with a
// `server_sent_events_writer` output sends `inference.result` events on SSE instead
// (see csv_input.cpp for consuming them).
//
// Run:  build/bin/example_sensor_update   (in-process emulator)
//       ARCHETYPE_API_KEY=... build/bin/example_sensor_update --real --lens lns-...
#include "example_support.hpp"

#include <lens/client.hpp>
#include <lens/scoped_session.hpp>
#include <lens/session.hpp>

#include <boost/json/serialize.hpp>

#include <cmath>
#include <iostream>

namespace {

/// One line of a sensor log, as the lens expects it.
boost::json::value reading(int n)
{
    boost::json::object o;
    o["sensor_id"] = "pump-7";
    o["timestamp"] = 1700000000 + n;
    o["vibration_mm_s"] = std::round(20 * (1 + std::sin(n)) ) / 10.0;
    o["temperature_c"] = 40 + n % 3;
    return o;
}

} // namespace

lens::task<void> sensor_update(example::environment& env)
{
    lens::client client = env.make_client();
    co_await lens::with_session(client, env.lens(lens::emulator::builtin::mailbox),
                                [&](const lens::session_record& record) -> lens::task<void> {
        lens::session channel = co_await client.open_session(record);

        // Ten readings, one after the other, as the SDK's sensor-log example sends them.
        int accepted = 0;
        for (int n = 0; n < 10; ++n) {
            boost::json::value reply = co_await channel.update(reading(n));
            if (n == 0)
                std::cout << "first reply: " << boost::json::serialize(reply) << '\n';
            ++accepted;
        }
        std::cout << accepted << " readings accepted\n";
        example::expect(accepted == 10, "every reading accepted");
        example::expect(channel.stats().requests_sent >= 10, "all sent on the one channel");

        lens::session_record now = co_await channel.status();
        std::cout << "the session counted " << now.num_updates << " updates\n";
        example::expect(now.num_updates >= 10, "session.status counts the updates");

        lens::read_result mail = co_await channel.read();
        for (const auto& m : mail.messages)
            if (m.type == "inference.result")
                std::cout << "  " << m.type << ": " << boost::json::serialize(m.data) << '\n';
        if (env.emulated())
            example::expect(mail.messages.size() == 11, "the mailbox lens echoed every reading");
    });
}

int main(int argc, char** argv)
{
    return example::run(argc, argv, sensor_update);
}
