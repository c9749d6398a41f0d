#pragma once
#include "cli/commands.hpp"
namespace lens::cli {
/// `lens demo`: an in-process emulator and a walk through the API, narrated on stdout.
int run_demo(const globals& g, bool tls);
}
