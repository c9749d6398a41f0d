/// \file
/// lens/transfer.hpp — options of the streamed file transfers.
///
/// `client::upload_file(path, opts)`, `client::download_file_to(id, path, opts)` and
/// `client::download_file_to_sink(id, sink, opts)` move a file between disk (or a sink)
/// and the server a chunk at a time: the client never holds more than one chunk of it,
/// whatever its size. Their deadline bounds stalls, not the transfer: each read and
/// each write must make progress within `stall_timeout`, so a slow link that keeps
/// moving never fails, and a dead one fails after `stall_timeout` with errc::timeout.
/// (`config::timeout`, the whole-call deadline of the other operations, does not
/// apply; `config::connect_timeout` still bounds each connection attempt.)
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <string_view>

namespace lens {

/// How a streamed transfer reports progress: `done` bytes of the file moved so far, of
/// `total` when it is known (always for uploads; for downloads when the server sent a
/// Content-Length). Called on the client's executor after each chunk, with `done`
/// increasing, last with `done == *total` on success. It must not block: the transfer
/// waits for it. An exception it throws ends the transfer with that exception.
using transfer_progress = std::function<void(std::uint64_t done, std::optional<std::uint64_t> total)>;

/// Where `client::download_file_to_sink` hands the file: one chunk at a time, in order,
/// each chunk valid only during the call. An exception it throws ends the download with
/// that exception (and nothing is retried after a first chunk was delivered).
using transfer_sink = std::function<void(std::string_view chunk)>;

/// The options of a streamed upload or download.
struct transfer_options {
    /// The longest time one read or write of the transfer may go without progress
    /// (sending the request, each chunk of the body, the reply's header and each chunk
    /// of its body); past it the transfer fails with errc::timeout. Bounds stalls, not
    /// the whole transfer: a 2 GiB file on a slow link takes as long as it takes. A
    /// stalled download is retried like any lost connection (`config::retry`), so a dead
    /// server is given up after up to `retry.max_attempts` stalls, plus the backoff.
    std::chrono::milliseconds stall_timeout = std::chrono::seconds(30);
    /// Called after each chunk (see `transfer_progress`); empty: no reports.
    transfer_progress progress;
    /// The size of the chunks read from disk or from the connection, in bytes (at least
    /// 4 KiB; smaller values are raised). Memory use of a transfer is about one chunk.
    std::size_t chunk_size = 64 * 1024;
};

} // namespace lens
