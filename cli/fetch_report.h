// How fetch, pull and clone report what a fetch brought (git's "From REMOTE" lines).
#pragma once

#include <string>

#include <nlohmann/json.hpp>

#include "repo/repository.h"

namespace dvol::cli {

nlohmann::json fetch_json(const FetchOutcome& f);
void print_fetch(const std::string& remote, const FetchOutcome& f);

}  // namespace dvol::cli
