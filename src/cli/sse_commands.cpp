// Temporary registration so the tool links; the SSE work replaces this file.
#include "cli/commands.hpp"
namespace lens::cli {
void add_sse_commands(CLI::App&, globals&, action&) {}
}
