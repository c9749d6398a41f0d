// validate — check that a session is ready, over its WebSocket and over REST.
//
// Shows: session.validate() (the `session.validate` event, `{is_valid, error_messages}`),
// the same event sent through REST with client.process_event (what the official SDK
// does right after creating a session), and running two requests at once on one
// session with `&&`: replies are matched to requests by type, no request ids needed.
//
// Run:  build/bin/example_validate   (in-process emulator)
//       ARCHETYPE_API_KEY=... build/bin/example_validate --real --lens lns-...
#include "example_support.hpp"

#include <lens/client.hpp>
#include <lens/scoped_session.hpp>
#include <lens/session.hpp>

#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/json/serialize.hpp>

#include <iostream>

using namespace boost::asio::experimental::awaitable_operators;

lens::task<void> validate(example::environment& env)
{
    lens::client client = env.make_client();
    co_await lens::with_session(client, env.lens(lens::emulator::builtin::query),
                                [&](const lens::session_record& record) -> lens::task<void> {
        lens::session channel = co_await client.open_session(record);

        lens::validation v = co_await channel.validate();
        std::cout << "session.validate: " << (v.is_valid ? "valid" : "invalid") << '\n';
        for (const auto& message : v.error_messages)
            std::cout << "  " << message << '\n';
        example::expect(v.is_valid, "a fresh session is valid");

        // The same event through REST (POST lens/sessions/events/process): the raw reply.
        boost::json::value reply = co_await client.process_event(record.session_id, "session.validate", nullptr);
        std::cout << "events/process session.validate: " << boost::json::serialize(reply) << '\n';
        const auto* data = reply.is_object() ? reply.get_object().if_contains("event_data") : nullptr;
        example::expect(data && data->is_object() && data->get_object().contains("is_valid"),
                        "the REST reply carries is_valid");

        // Both in flight at once on one WebSocket: status and validate.
        auto [now, again] = co_await (channel.status() && channel.validate());
        std::cout << "status and validate together: " << lens::to_string(now.status) << ", "
                  << (again.is_valid ? "valid" : "invalid") << '\n';
        example::expect(again.is_valid && now.status == lens::session_status::running,
                        "still running and valid");
    });
}

int main(int argc, char** argv)
{
    return example::run(argc, argv, validate);
}
