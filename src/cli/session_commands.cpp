// Temporary registration so the tool links; the WebSocket work replaces this file.
#include "cli/commands.hpp"
namespace lens::cli {
void add_session_commands(CLI::App&, globals&, action&) {}
}
