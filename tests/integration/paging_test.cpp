// Integration tests of the paged listings (lens::page: shard_index and
// max_items_per_shard of lens/metadata and lens/sessions/metadata) against the
// emulator, which cuts shard i of size n as items [i*n, (i+1)*n).
#include "integration/fixture.hpp"

#include <lens/client.hpp>
#include <lens/page.hpp>
#include <lens/records.hpp>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <string>
#include <vector>

namespace {

using lens::task;
using lens::test::fixture;

template <class Record, class Id>
std::vector<std::string> ids_of(const std::vector<Record>& records, Id id)
{
    std::vector<std::string> out;
    for (auto& r : records)
        out.push_back(r.*id);
    return out;
}

std::vector<std::string> slice(const std::vector<std::string>& all, std::size_t first, std::size_t count)
{
    std::vector<std::string> out;
    for (std::size_t i = first; i < all.size() && i < first + count; ++i)
        out.push_back(all[i]);
    return out;
}

/// Five items in shards of two: 2, 2, 1, then nothing (a braced list outside the
/// coroutine: g++ 12).
std::vector<std::size_t> shard_sizes_of_five_by_two()
{
    return {2, 2, 1, 0};
}

} // namespace

TEST_CASE("paging: page() is everything, like list_lenses() and list_sessions()")
{
    const lens::page p;
    CHECK(p.shard_index == -1);
    CHECK(p.max_items_per_shard == -1);
    CHECK(p == lens::page::all());
    CHECK(lens::page(2, 10) != lens::page::all());

    fixture f;
    f.run([&]() -> task<void> {
        auto c = f.make_client();
        auto everything = co_await c.list_lenses();
        REQUIRE(everything.size() == 3);
        auto all_page = co_await c.list_lenses(lens::page::all());
        CHECK(ids_of(all_page, &lens::lens_record::lens_id) == ids_of(everything, &lens::lens_record::lens_id));
        co_await c.create_session("lns-emu-mailbox");
        auto sessions = co_await c.list_sessions(lens::page());
        CHECK(sessions.size() == 1);
    });
}

TEST_CASE("paging: lenses come in shards of max_items_per_shard, in order")
{
    fixture f;
    f.run([&]() -> task<void> {
        auto c = f.make_client();
        const auto all = ids_of(co_await c.list_lenses(), &lens::lens_record::lens_id);
        REQUIRE(all.size() == 3);

        auto first = co_await c.list_lenses(lens::page(0, 2));
        CHECK(ids_of(first, &lens::lens_record::lens_id) == slice(all, 0, 2));
        auto second = co_await c.list_lenses(lens::page(1, 2));
        CHECK(ids_of(second, &lens::lens_record::lens_id) == slice(all, 2, 2));
        auto past_the_end = co_await c.list_lenses(lens::page(2, 2));
        CHECK(past_the_end.empty());
        auto one = co_await c.list_lenses(lens::page(1, 1));
        CHECK(ids_of(one, &lens::lens_record::lens_id) == slice(all, 1, 1));
    });
}

TEST_CASE("paging: sessions come in shards, and the shards add up to the whole list")
{
    fixture f;
    f.run([&]() -> task<void> {
        auto c = f.make_client();
        for (int i = 0; i < 5; ++i)
            co_await c.create_session("lns-emu-mailbox");
        const auto all = ids_of(co_await c.list_sessions(), &lens::session_record::session_id);
        REQUIRE(all.size() == 5);

        std::vector<std::string> joined;
        std::vector<std::size_t> sizes;
        for (std::int64_t index = 0; index < 4; ++index) {
            auto shard = co_await c.list_sessions(lens::page(index, 2));
            sizes.push_back(shard.size());
            for (auto& id : ids_of(shard, &lens::session_record::session_id))
                joined.push_back(id);
        }
        CHECK(sizes == shard_sizes_of_five_by_two());
        CHECK(joined == all);
    });
}

TEST_CASE("paging: the diagnostics overloads take a page too")
{
    fixture f;
    f.run([&]() -> task<void> {
        auto c = f.make_client();
        lens::diagnostics diag;
        auto [ec, lenses] = co_await c.list_lenses(lens::page(0, 1), diag,
                                                   boost::asio::as_tuple(boost::asio::use_awaitable));
        CHECK(!ec);
        CHECK(lenses.size() == 1);
        auto [ec2, sessions] = co_await c.list_sessions(lens::page(0, 1), diag,
                                                        boost::asio::as_tuple(boost::asio::use_awaitable));
        CHECK(!ec2);
        CHECK(sessions.empty());
    });
}
