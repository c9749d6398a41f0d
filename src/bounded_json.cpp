// bounded_json.cpp — JSON parsing with a memory budget (see detail/bounded_json.hpp).
#include "detail/bounded_json.hpp"

#include <lens/error.hpp>

#include <boost/json/memory_resource.hpp>
#include <boost/json/parser.hpp>
#include <boost/json/storage_ptr.hpp>

#include <cstdint>
#include <cstring>
#include <new>

namespace lens::detail {

namespace {

/// Counts what it hands out and refuses (std::bad_alloc) past the budget.
///
/// Each block records its own size in a header: Boost.JSON does not always give
/// `deallocate` the size and alignment it allocated with (ASan reports the mismatch
/// with sized delete), so neither the accounting nor the release may trust them.
class budget_resource final : public boost::json::memory_resource {
public:
    explicit budget_resource(std::size_t budget) noexcept : left_(budget) {}

private:
    /// Room for the size, keeping the block aligned like `operator new`'s own blocks.
    static constexpr std::size_t header = __STDCPP_DEFAULT_NEW_ALIGNMENT__;

    void* do_allocate(std::size_t n, std::size_t align) override
    {
        if (n > left_ || align > header || n > SIZE_MAX - header)
            throw std::bad_alloc();
        auto* block = static_cast<unsigned char*>(::operator new(n + header));
        std::memcpy(block, &n, sizeof n);
        left_ -= n;
        return block + header;
    }
    void do_deallocate(void* p, std::size_t, std::size_t) override
    {
        auto* block = static_cast<unsigned char*>(p) - header;
        std::size_t n;
        std::memcpy(&n, block, sizeof n);
        left_ += n;
        ::operator delete(block);
    }
    bool do_is_equal(const memory_resource& other) const noexcept override { return this == &other; }

    std::size_t left_;
};

} // namespace

boost::json::value parse_bounded(std::string_view text, std::size_t budget, boost::system::error_code& ec)
{
    ec = {};
    try {
        budget_resource resource(budget);
        boost::json::storage_ptr sp(&resource);
        // The parser's temporary stack and the tree both come from the budget.
        boost::json::parser p(sp);
        p.reset(sp);
        p.write(text, ec); // the whole document: trailing garbage is an error too
        if (ec)
            return nullptr;
        boost::json::value tree = p.release();
        // Copied into the default storage: callers keep and edit what they get, with
        // no budget attached.
        return boost::json::value(tree, boost::json::storage_ptr());
    } catch (const std::bad_alloc&) {
        ec = errc::body_too_large;
        return nullptr;
    }
}

} // namespace lens::detail
