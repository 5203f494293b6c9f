// The Catch2 runner for all unit tests; each module's cases carry the tag [<module>].
#define CATCH_CONFIG_MAIN
#include <catch2/catch.hpp>
