#include <lens/config.hpp>

#include <cstdlib>

namespace lens {

config config::from_environment()
{
    config c;
    if (const char* e = std::getenv("ARCHETYPE_API_ENDPOINT"); e && *e)
        c.endpoint = e;
    if (const char* k = std::getenv("ARCHETYPE_API_KEY"); k && *k)
        c.api_key = k;
    return c;
}

} // namespace lens
