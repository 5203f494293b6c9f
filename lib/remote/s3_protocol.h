// The pieces of the S3 remote that need no network, apart so that tests can reach them: the
// s3:// URL, where endpoint, region and credentials come from, the escaping S3's signatures
// expect, and the few XML documents S3 answers with (a ListObjectsV2 page, an error).
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/error.h"
#include "remote/backend.h"

namespace dvol::remote::s3 {

// s3://BUCKET[/PREFIX]: the bucket (3-255 of [A-Za-z0-9._-]) and the key prefix the remote
// lives under ("" for the bucket's root; segments as in a key, no trailing '/').
struct Url {
    std::string bucket;
    std::string prefix;
};
// Errc::invalid_argument for anything else; the message never repeats the URL when it looks
// like it carries a credential (user@ or user:password@).
Result<Url> parse_url(std::string_view url);

// Reads an environment variable; nullopt when unset. Tests pass a fake one.
using EnvLookup = std::function<std::optional<std::string>(std::string_view name)>;
// The process environment (an empty variable counts as unset).
EnvLookup process_env();

struct Credentials {
    std::string access_key;
    std::string secret_key;
    std::string session_token;  // empty unless temporary credentials
    // Where they were found, for messages: "AWS_ACCESS_KEY_ID in the environment" or
    // "profile 'default' in /root/.aws/credentials". Never the credentials themselves.
    std::string source;
};

struct Settings {
    std::string endpoint;  // scheme://host[:port][/path], no trailing '/'
    std::string region;
    std::string ca_file;   // AWS_CA_BUNDLE; empty: the system's
    Credentials credentials;
};

// Settings from explicit values (empty: not given) and the environment, in this order:
// - endpoint: `endpoint`, AWS_ENDPOINT_URL_S3, AWS_ENDPOINT_URL, the profile's endpoint_url
//   in the config file, else https://s3.REGION.amazonaws.com; http:// or https:// only.
// - region: `region`, AWS_REGION, AWS_DEFAULT_REGION, the profile's region in the config
//   file, else us-east-1.
// - credentials: AWS_ACCESS_KEY_ID with AWS_SECRET_ACCESS_KEY (and AWS_SESSION_TOKEN) from
//   the environment; else the profile (AWS_PROFILE, default "default") in the shared
//   credentials file (AWS_SHARED_CREDENTIALS_FILE, default ~/.aws/credentials); else that
//   profile in the config file (AWS_CONFIG_FILE, default ~/.aws/config; sections
//   "[profile NAME]", or "[default]").
// Errc::invalid_argument when no credentials are found, when only one of the pair is set, or
// for a malformed endpoint; messages name variables and files, never their secret values.
Result<Settings> resolve_settings(const std::string& endpoint, const std::string& region, const EnvLookup& env);

// An INI file as the AWS tools write it: section -> key (lower case) -> value. Comments
// (# or ;) and indented sub-settings ("s3 =\n  addressing_style = path") are skipped.
using Ini = std::vector<std::pair<std::string, std::vector<std::pair<std::string, std::string>>>>;
Ini parse_ini(std::string_view text);

// Percent-encoding as SigV4 canonicalises it: A-Z a-z 0-9 - _ . ~ stay, every other byte is
// %XX (upper-case hex); '/' stays too when `keep_slash` (object paths), not in query values.
std::string uri_encode(std::string_view s, bool keep_slash);

// An ETag without its quotes (and without a weak "W/" prefix): the form RGW's If-Match wants.
std::string unquote_etag(std::string_view etag);

// One page of a ListObjectsV2 answer.
struct ListPage {
    std::vector<Entry> entries;  // full keys, as the bucket names them
    bool truncated = false;
    std::string next_token;
};
// Errc::io when the document is not a well-formed ListBucketResult.
Result<ListPage> parse_list_page(std::string_view xml);

// The Code and Message of an S3 <Error> document; empty when the body is not one.
struct ErrorDoc {
    std::string code;
    std::string message;
};
ErrorDoc parse_error(std::string_view xml);

// Calls `leaf` with the path ("A/B/C", namespace prefixes dropped) and the entity-decoded text
// of every element that holds no element, and `close` with the path of every element as it
// closes. Errc::io for malformed XML (mismatched tags, unknown entities, truncation).
Status walk_xml(std::string_view xml, const std::function<void(const std::string& path, std::string text)>& leaf,
                const std::function<void(const std::string& path)>& close);

}  // namespace dvol::remote::s3
