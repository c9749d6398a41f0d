/// \file
/// lens/page.hpp — one page of a listing (docs/protocol.md §2: `shard_index` and
/// `max_items_per_shard` of lens/metadata and lens/sessions/metadata).
///
/// The server cuts a listing into shards of `max_items_per_shard` items; shard `i`
/// holds items `[i * n, (i + 1) * n)`. -1 for either (the default) asks for every
/// item, which is what `client::list_lenses()` and `client::list_sessions()` send.
///
///     auto second = co_await c.list_sessions(lens::page(1, 20)); // sessions 20..39
#pragma once

#include <cstdint>

namespace lens {

/// Which shard of a listing to fetch; default-constructed: everything.
struct page {
    /// Everything (`shard_index=-1&max_items_per_shard=-1`).
    /// Not an aggregate on purpose: g++ 12 destroys a braced aggregate temporary twice
    /// in a co_await expression.
    page() noexcept = default;
    /// Shard `index` (from 0) of `size` items each.
    page(std::int64_t index, std::int64_t size) noexcept : shard_index(index), max_items_per_shard(size) {}

    /// The page of every item: the same as a default-constructed one.
    static page all() noexcept { return page(); }

    std::int64_t shard_index = -1;         ///< which shard, from 0; -1: every item
    std::int64_t max_items_per_shard = -1; ///< items per shard; -1: every item

    /// Equal when both fields are.
    friend bool operator==(const page&, const page&) noexcept = default;
};

} // namespace lens
