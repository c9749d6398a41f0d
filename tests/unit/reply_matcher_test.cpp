#include <doctest/doctest.h>

#include <lens/detail/reply_matcher.hpp>

#include "detail/frame_fields.hpp"

#include <boost/json/parse.hpp>

#include <vector>

using lens::detail::classify_frame;
using lens::detail::frame_class;

namespace {
struct entry : lens::detail::matcher_entry {
    int id = 0;
    entry(std::string type, int i) { request_type = std::move(type); id = i; }
};
/// The classification of `text`, by the fields of its parsed tree; the tree is kept
/// alive because `request_type` views into it.
struct classified : frame_class {
    boost::json::value frame;
};
classified classify(std::string_view text)
{
    classified c;
    c.frame = boost::json::parse(text);
    lens::detail::frame_fields f;
    lens::detail::gather_from_tree(c.frame, f);
    static_cast<frame_class&>(c) = classify_frame(f);
    return c;
}
} // namespace

TEST_CASE("frames are classified by their reply type")
{
    auto r = classify(R"({"type":"session.validate.response","event_data":{"is_valid":true}})");
    CHECK(r.kind == frame_class::reply);
    CHECK(r.request_type == "session.validate");

    // session.status answers with the bare record.
    r = classify(R"({"session_id":"lsn-1","session_status":"3"})");
    CHECK(r.kind == frame_class::reply);
    CHECK(r.request_type == "session.status");

    CHECK(classify(R"({"type":"error","message":"Unknown session id: lsn-1"})").kind == frame_class::error);
    CHECK(classify(R"({"type":"inference.result","event_data":{}})").kind == frame_class::unsolicited);
    CHECK(classify(R"({"type":".response"})").kind == frame_class::unsolicited);
    CHECK(classify(R"({"type":42})").kind == frame_class::unsolicited);
    CHECK(classify(R"([1,2,3])").kind == frame_class::unsolicited);
    CHECK(classify(R"("text")").kind == frame_class::unsolicited);
    CHECK(classify(R"({"no_type":true})").kind == frame_class::unsolicited);
    // A reply whose failure is in `message` is still a reply of its type.
    r = classify(R"({"type":"model.query.response","message":"Response timed out for query"})");
    CHECK(r.kind == frame_class::reply);
    CHECK(r.request_type == "model.query");
}

TEST_CASE("replies match the oldest pending request of their type, FIFO per type")
{
    lens::detail::reply_matcher<entry> m;
    entry a("session.status", 1), b("model.query", 2), c("session.status", 3), d("model.query", 4);
    m.expect(a);
    m.expect(b);
    m.expect(c);
    m.expect(d);
    CHECK(m.size() == 4);
    // Out of order across types, in order within a type.
    CHECK(m.match("model.query")->id == 2);
    CHECK(m.match("session.status")->id == 1);
    CHECK(m.match("session.status")->id == 3);
    CHECK(m.match("session.status") == nullptr);
    CHECK(m.match("session.read") == nullptr);
    CHECK(m.match("model.query")->id == 4);
    CHECK(m.empty());
}

TEST_CASE("an abandoned entry keeps its place so its late reply is not handed to the next caller")
{
    // Abandonment is a flag of the session's entry; the matcher simply does not skip it.
    struct flagged : entry {
        bool abandoned = false;
        using entry::entry;
    };
    lens::detail::reply_matcher<flagged> m;
    flagged first("session.validate", 1), second("session.validate", 2);
    m.expect(first);
    m.expect(second);
    first.abandoned = true; // its caller timed out
    auto* late = m.match("session.validate");
    REQUIRE(late);
    CHECK(late->id == 1);
    CHECK(late->abandoned); // consumed and dropped by the session
    CHECK(m.match("session.validate")->id == 2);
}

TEST_CASE("error frames take the oldest request of any type - drain empties in send order")
{
    lens::detail::reply_matcher<entry> m;
    entry a("model.query", 1), b("session.status", 2), c("session.read", 3);
    m.expect(a);
    m.expect(b);
    m.expect(c);
    CHECK(m.oldest()->id == 1);
    std::vector<int> drained;
    m.drain([&](entry& e) { drained.push_back(e.id); });
    CHECK(drained == std::vector<int>{2, 3});
    CHECK(m.empty());
    CHECK(m.oldest() == nullptr);
}

TEST_CASE("a reply finds its type behind 10,000 pending requests of another type - send order holds in both lists")
{
    // 10,000 queries pending (a slow model), then one status request. The per-type list
    // makes the status reply's match the front of its own list (O(1) by construction);
    // what can be checked is that the two indexes stay consistent whichever way entries
    // leave.
    lens::detail::reply_matcher<entry> m;
    std::vector<entry> queries;
    queries.reserve(10000);
    for (int i = 0; i < 10000; ++i)
        m.expect(queries.emplace_back("model.query", i));
    entry status("session.status", -1);
    m.expect(status);
    CHECK(m.type_lists() == 2);
    CHECK(m.match("session.status") == &status);
    CHECK(m.match("session.status") == nullptr);
    CHECK(m.size() == 10000);
    // The queries still answer in send order, whichever way they leave.
    CHECK(m.match("model.query")->id == 0);
    CHECK(m.oldest()->id == 1);
    CHECK(m.match("model.query")->id == 2);
    CHECK(m.size() == 9997);
    m.drain([](entry&) {}); // the entries go before the matcher: unlink them first
}

TEST_CASE("error frames and matches interleave - each list sees removals made through the other")
{
    lens::detail::reply_matcher<entry> m;
    entry a("session.status", 1), b("model.query", 2), c("session.status", 3), d("model.query", 4);
    m.expect(a);
    m.expect(b);
    m.expect(c);
    m.expect(d);
    CHECK(m.oldest()->id == 1);                   // an error frame takes the status request...
    CHECK(m.match("session.status")->id == 3);   // ...so the next status reply is the second one's
    CHECK(m.match("model.query")->id == 2);
    CHECK(m.oldest()->id == 4);
    CHECK(m.empty());
    CHECK(m.match("model.query") == nullptr);
    // Entries can be expected again after leaving (a resend after a reconnect).
    m.expect(d);
    m.expect(a);
    std::vector<int> drained;
    m.drain([&](entry& e) { drained.push_back(e.id); });
    CHECK(drained == std::vector<int>{4, 1});
    CHECK(m.match("session.status") == nullptr);
}

TEST_CASE("many distinct request types do not grow the matcher without bound")
{
    // call() takes any type: lists of types no longer pending are let go past a few.
    lens::detail::reply_matcher<entry> m;
    for (int round = 0; round < 3; ++round) {
        std::vector<entry> es;
        es.reserve(100);
        for (int i = 0; i < 100; ++i)
            m.expect(es.emplace_back("custom." + std::to_string(i), i));
        for (int i = 0; i < 50; ++i)
            CHECK(m.match("custom." + std::to_string(i))->id == i);
        for (int i = 50; i < 100; ++i)
            CHECK(m.oldest()->id == i);
        CHECK(m.empty());
        CHECK(m.type_lists() <= 16);
    }
}
