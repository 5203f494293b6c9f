#include "remote/s3_protocol.h"

#include <pwd.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cstdlib>

#include <fmt/format.h>

#include "base/fs.h"

namespace dvol::remote::s3 {

namespace {

bool bucket_char(char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-';
}

std::string_view trim(std::string_view s) {
    while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front()))) s.remove_prefix(1);
    while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.remove_suffix(1);
    return s;
}

std::string lower(std::string_view s) {
    std::string out(s);
    std::transform(out.begin(), out.end(), out.begin(), [](unsigned char c) { return std::tolower(c); });
    return out;
}

const std::string* ini_value(const Ini& ini, std::string_view section, std::string_view key) {
    for (const auto& [name, values] : ini) {
        if (name != section) continue;
        for (const auto& [k, v] : values)
            if (k == key) return &v;
    }
    return nullptr;
}

bool has_section(const Ini& ini, std::string_view section) {
    return std::any_of(ini.begin(), ini.end(), [&](const auto& s) { return s.first == section; });
}

// A file of the AWS tools, or nullopt when it does not exist.
Result<std::optional<Ini>> load_ini(const std::string& path) {
    auto text = read_small_file(path, 1 << 20);
    if (!text) {
        if (text.error().code == Errc::not_found) return std::optional<Ini>();
        return std::move(text).error();
    }
    return std::optional<Ini>(parse_ini(*text));
}

std::string home_dir(const EnvLookup& env) {
    if (auto h = env("HOME")) return *h;
    if (const passwd* pw = ::getpwuid(::getuid()); pw && pw->pw_dir) return pw->pw_dir;
    return "/";
}

// Appends the UTF-8 form of code point `cp`.
bool append_utf8(std::string& out, uint32_t cp) {
    if (cp < 0x80) {
        out += static_cast<char>(cp);
    } else if (cp < 0x800) {
        out += static_cast<char>(0xC0 | (cp >> 6));
        out += static_cast<char>(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
        if (cp >= 0xD800 && cp <= 0xDFFF) return false;
        out += static_cast<char>(0xE0 | (cp >> 12));
        out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
        out += static_cast<char>(0x80 | (cp & 0x3F));
    } else if (cp < 0x110000) {
        out += static_cast<char>(0xF0 | (cp >> 18));
        out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
        out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
        out += static_cast<char>(0x80 | (cp & 0x3F));
    } else {
        return false;
    }
    return true;
}

// Text between tags with its five entities and character references decoded.
Result<std::string> xml_decode(std::string_view s) {
    std::string out;
    out.reserve(s.size());
    while (!s.empty()) {
        size_t amp = s.find('&');
        out.append(s.substr(0, amp));
        if (amp == std::string_view::npos) break;
        s.remove_prefix(amp);
        size_t semi = s.find(';');
        if (semi == std::string_view::npos || semi > 12) return make_error(Errc::io, "an unterminated XML entity");
        std::string_view ent = s.substr(1, semi - 1);
        if (ent == "amp") out += '&';
        else if (ent == "lt") out += '<';
        else if (ent == "gt") out += '>';
        else if (ent == "quot") out += '"';
        else if (ent == "apos") out += '\'';
        else if (ent.size() > 1 && ent[0] == '#') {
            bool hex = ent[1] == 'x' || ent[1] == 'X';
            std::string_view digits = ent.substr(hex ? 2 : 1);
            uint32_t cp = 0;
            auto [p, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), cp, hex ? 16 : 10);
            if (digits.empty() || ec != std::errc() || p != digits.data() + digits.size() || !append_utf8(out, cp))
                return make_error(Errc::io, fmt::format("a bad XML character reference &{};", ent));
        } else {
            return make_error(Errc::io, fmt::format("an unknown XML entity &{};", ent));
        }
        s.remove_prefix(semi + 1);
    }
    return out;
}

}  // namespace

Result<Url> parse_url(std::string_view url) {
    constexpr std::string_view scheme = "s3://";
    if (!url.starts_with(scheme))
        return make_error(Errc::invalid_argument, fmt::format("'{}' is not an s3:// URL (s3://BUCKET/PREFIX)", url));
    std::string_view rest = url.substr(scheme.size());
    size_t slash = rest.find('/');
    std::string_view bucket = rest.substr(0, slash);
    if (bucket.find('@') != std::string_view::npos)
        return make_error(Errc::invalid_argument,
                          "an s3:// URL names no credentials: give them in AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY "
                          "or in a profile of ~/.aws/credentials");
    if (bucket.size() < 3 || bucket.size() > 255 || !std::all_of(bucket.begin(), bucket.end(), bucket_char))
        return make_error(Errc::invalid_argument,
                          fmt::format("'{}' is not a bucket name (3 to 255 of letters, digits, '.', '_' and '-')", bucket));
    Url out;
    out.bucket = std::string(bucket);
    if (slash != std::string_view::npos) {
        std::string_view prefix = rest.substr(slash + 1);
        while (!prefix.empty() && prefix.back() == '/') prefix.remove_suffix(1);
        if (!prefix.empty() && !valid_key(prefix))
            return make_error(Errc::invalid_argument,
                              fmt::format("'{}' is not a prefix for a remote: '/'-separated names of letters, digits, '.', '_' "
                                          "and '-'",
                                          prefix));
        out.prefix = std::string(prefix);
    }
    return out;
}

EnvLookup process_env() {
    return [](std::string_view name) -> std::optional<std::string> {
        const char* v = std::getenv(std::string(name).c_str());
        if (!v || !*v) return std::nullopt;
        return std::string(v);
    };
}

Ini parse_ini(std::string_view text) {
    Ini ini;
    while (!text.empty()) {
        size_t nl = text.find('\n');
        std::string_view raw = text.substr(0, nl);
        text.remove_prefix(nl == std::string_view::npos ? text.size() : nl + 1);
        if (!raw.empty() && raw.back() == '\r') raw.remove_suffix(1);
        bool indented = !raw.empty() && (raw.front() == ' ' || raw.front() == '\t');
        std::string_view line = trim(raw);
        if (line.empty() || line.front() == '#' || line.front() == ';') continue;
        if (line.front() == '[' && line.back() == ']') {
            ini.emplace_back(std::string(trim(line.substr(1, line.size() - 2))), std::vector<std::pair<std::string, std::string>>{});
            continue;
        }
        // A nested setting belongs to the key above it ("s3 =" and its indented lines).
        if (indented || ini.empty()) continue;
        size_t eq = line.find('=');
        if (eq == std::string_view::npos) continue;
        ini.back().second.emplace_back(lower(trim(line.substr(0, eq))), std::string(trim(line.substr(eq + 1))));
    }
    return ini;
}

Result<Settings> resolve_settings(const std::string& endpoint, const std::string& region, const EnvLookup& env) {
    Settings s;
    const std::string home = home_dir(env);
    const std::optional<std::string> profile_env = env("AWS_PROFILE");
    const std::string profile = profile_env.value_or("default");

    const std::string config_path = env("AWS_CONFIG_FILE").value_or(home + "/.aws/config");
    DVOL_TRY(std::optional<Ini> config, load_ini(config_path));
    // The config file names profiles "[profile NAME]", except the default one.
    std::string config_section = "profile " + profile;
    if (profile == "default" && config && !has_section(*config, config_section)) config_section = "default";
    auto config_value = [&](std::string_view key) -> std::optional<std::string> {
        if (!config) return std::nullopt;
        const std::string* v = ini_value(*config, config_section, key);
        if (!v || v->empty()) return std::nullopt;
        return *v;
    };

    // Region.
    if (!region.empty()) s.region = region;
    else if (auto r = env("AWS_REGION")) s.region = *r;
    else if (auto r2 = env("AWS_DEFAULT_REGION")) s.region = *r2;
    else if (auto r3 = config_value("region")) s.region = *r3;
    else s.region = "us-east-1";
    if (s.region.empty() || !std::all_of(s.region.begin(), s.region.end(), [](char c) {
            return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '_';
        }))
        return make_error(Errc::invalid_argument, fmt::format("'{}' is not a region name", s.region));

    // Endpoint.
    std::string where;
    if (!endpoint.empty()) s.endpoint = endpoint, where = "the endpoint";
    else if (auto e = env("AWS_ENDPOINT_URL_S3")) s.endpoint = *e, where = "AWS_ENDPOINT_URL_S3";
    else if (auto e2 = env("AWS_ENDPOINT_URL")) s.endpoint = *e2, where = "AWS_ENDPOINT_URL";
    else if (auto e3 = config_value("endpoint_url")) s.endpoint = *e3, where = "endpoint_url in " + config_path;
    else s.endpoint = "https://s3." + s.region + ".amazonaws.com", where = "the region's endpoint";
    while (!s.endpoint.empty() && s.endpoint.back() == '/') s.endpoint.pop_back();
    size_t scheme_end = s.endpoint.find("://");
    std::string scheme = lower(s.endpoint.substr(0, scheme_end == std::string::npos ? 0 : scheme_end));
    if (scheme != "http" && scheme != "https")
        return make_error(Errc::invalid_argument, fmt::format("{} must start with http:// or https://", where));
    std::string_view authority = std::string_view(s.endpoint).substr(scheme_end + 3);
    authority = authority.substr(0, authority.find('/'));
    if (authority.find('@') != std::string_view::npos)
        return make_error(Errc::invalid_argument, fmt::format("{} must not carry credentials (user@host)", where));
    if (authority.empty()) return make_error(Errc::invalid_argument, fmt::format("{} names no host", where));
    if (s.endpoint.find_first_of("?# \t\r\n") != std::string::npos)
        return make_error(Errc::invalid_argument, fmt::format("{} must be scheme://host[:port][/path]", where));

    if (auto ca = env("AWS_CA_BUNDLE")) s.ca_file = *ca;

    // Credentials: the environment first, as every AWS tool does.
    auto id = env("AWS_ACCESS_KEY_ID");
    auto secret = env("AWS_SECRET_ACCESS_KEY");
    if (id && secret) {
        s.credentials = {*id, *secret, env("AWS_SESSION_TOKEN").value_or(""), "AWS_ACCESS_KEY_ID in the environment"};
        return s;
    }
    if (id || secret)
        return make_error(Errc::invalid_argument,
                          fmt::format("{} is set but {} is not: set both, or neither to use a profile",
                                      id ? "AWS_ACCESS_KEY_ID" : "AWS_SECRET_ACCESS_KEY", id ? "AWS_SECRET_ACCESS_KEY" : "AWS_ACCESS_KEY_ID"));

    const std::string creds_path = env("AWS_SHARED_CREDENTIALS_FILE").value_or(home + "/.aws/credentials");
    DVOL_TRY(std::optional<Ini> creds, load_ini(creds_path));
    struct Source {
        const std::optional<Ini>* ini;
        std::string section;
        std::string path;
    };
    for (const Source& src : {Source{&creds, profile, creds_path}, Source{&config, config_section, config_path}}) {
        if (!*src.ini || !has_section(**src.ini, src.section)) continue;
        const std::string* key_id = ini_value(**src.ini, src.section, "aws_access_key_id");
        const std::string* key = ini_value(**src.ini, src.section, "aws_secret_access_key");
        if (!key_id && !key) continue;
        if (!key_id || !key || key_id->empty() || key->empty())
            return make_error(Errc::invalid_argument,
                              fmt::format("profile '{}' in {} needs both aws_access_key_id and aws_secret_access_key", profile, src.path));
        const std::string* token = ini_value(**src.ini, src.section, "aws_session_token");
        s.credentials = {*key_id, *key, token ? *token : "", fmt::format("profile '{}' in {}", profile, src.path)};
        return s;
    }
    return make_error(Errc::invalid_argument,
                      fmt::format("no S3 credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or give profile '{}' "
                                  "aws_access_key_id and aws_secret_access_key in {}{}",
                                  profile, creds_path, profile_env ? " (AWS_PROFILE)" : ""));
}

std::string uri_encode(std::string_view s, bool keep_slash) {
    static constexpr char hex[] = "0123456789ABCDEF";
    std::string out;
    out.reserve(s.size());
    for (unsigned char c : s) {
        bool plain = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_' ||
                     c == '.' || c == '~' || (keep_slash && c == '/');
        if (plain) {
            out += static_cast<char>(c);
        } else {
            out += '%';
            out += hex[c >> 4];
            out += hex[c & 15];
        }
    }
    return out;
}

std::string unquote_etag(std::string_view etag) {
    etag = trim(etag);
    if (etag.starts_with("W/")) etag.remove_prefix(2);
    if (etag.size() >= 2 && etag.front() == '"' && etag.back() == '"') etag = etag.substr(1, etag.size() - 2);
    return std::string(etag);
}

Status walk_xml(std::string_view xml, const std::function<void(const std::string& path, std::string text)>& leaf,
                const std::function<void(const std::string& path)>& close) {
    struct Open {
        std::string name;
        size_t path_len;  // length of `path` before this element's name was appended
        bool has_child = false;
        std::string text;
    };
    std::vector<Open> stack;
    std::string path;
    bool root_done = false;
    size_t i = 0;
    auto bad = [](std::string_view why) { return make_error(Errc::io, fmt::format("malformed XML: {}", why)); };
    while (i < xml.size()) {
        if (xml[i] != '<') {
            size_t lt = xml.find('<', i);
            std::string_view raw = xml.substr(i, lt == std::string_view::npos ? std::string_view::npos : lt - i);
            if (!stack.empty()) {
                DVOL_TRY(std::string text, xml_decode(raw));
                stack.back().text += text;
            } else if (!trim(raw).empty()) {
                return bad("text outside the root element");
            }
            i = lt == std::string_view::npos ? xml.size() : lt;
            continue;
        }
        std::string_view rest = xml.substr(i);
        if (rest.starts_with("<?")) {
            size_t end = xml.find("?>", i);
            if (end == std::string_view::npos) return bad("an unterminated <?");
            i = end + 2;
        } else if (rest.starts_with("<!--")) {
            size_t end = xml.find("-->", i);
            if (end == std::string_view::npos) return bad("an unterminated comment");
            i = end + 3;
        } else if (rest.starts_with("<![CDATA[")) {
            size_t end = xml.find("]]>", i);
            if (end == std::string_view::npos || stack.empty()) return bad("a stray CDATA section");
            stack.back().text += xml.substr(i + 9, end - i - 9);
            i = end + 3;
        } else if (rest.starts_with("<!")) {
            size_t end = xml.find('>', i);
            if (end == std::string_view::npos) return bad("an unterminated <!");
            i = end + 1;
        } else {
            size_t end = xml.find('>', i);
            if (end == std::string_view::npos) return bad("an unterminated tag");
            std::string_view tag = xml.substr(i + 1, end - i - 1);
            i = end + 1;
            bool closing = !tag.empty() && tag.front() == '/';
            bool self_closing = !tag.empty() && tag.back() == '/';
            if (closing) tag.remove_prefix(1);
            if (self_closing) tag.remove_suffix(1);
            std::string_view name = tag.substr(0, tag.find_first_of(" \t\r\n"));
            if (size_t colon = name.find(':'); colon != std::string_view::npos) name.remove_prefix(colon + 1);
            if (name.empty()) return bad("a tag without a name");
            if (closing) {
                if (stack.empty() || stack.back().name != name) return bad(fmt::format("</{}> closes nothing open", name));
                Open top = std::move(stack.back());
                stack.pop_back();
                if (!top.has_child) leaf(path, std::move(top.text));
                close(path);
                path.resize(top.path_len);
            } else {
                if (!stack.empty()) stack.back().has_child = true;
                else if (root_done) return bad("a second root element");
                size_t before = path.size();
                if (!path.empty()) path += '/';
                path += name;
                if (self_closing) {
                    leaf(path, std::string());
                    close(path);
                    path.resize(before);
                } else {
                    stack.push_back({std::string(name), before, false, {}});
                }
            }
            if (stack.empty()) root_done = true;
        }
    }
    if (!stack.empty()) return bad(fmt::format("<{}> is never closed (truncated?)", stack.back().name));
    if (!root_done) return bad("no element");
    return {};
}

Result<ListPage> parse_list_page(std::string_view xml) {
    ListPage page;
    Entry current;
    bool have_key = false, have_size = false, saw_root = false, saw_truncated = false;
    std::string size_error;
    auto leaf = [&](const std::string& path, std::string text) {
        if (path == "ListBucketResult/Contents/Key") {
            current.key = std::move(text);
            have_key = true;
        } else if (path == "ListBucketResult/Contents/Size") {
            auto [p, ec] = std::from_chars(text.data(), text.data() + text.size(), current.size);
            if (ec != std::errc() || p != text.data() + text.size() || text.empty()) size_error = text;
            have_size = true;
        } else if (path == "ListBucketResult/IsTruncated") {
            page.truncated = text == "true";
            saw_truncated = true;
        } else if (path == "ListBucketResult/NextContinuationToken") {
            page.next_token = std::move(text);
        }
    };
    std::string missing;
    auto close = [&](const std::string& path) {
        if (path == "ListBucketResult") saw_root = true;
        if (path != "ListBucketResult/Contents") return;
        if (!have_key || !have_size) missing = have_key ? "Size" : "Key";
        page.entries.push_back(std::move(current));
        current = {};
        have_key = have_size = false;
    };
    DVOL_CHECK(walk_xml(xml, leaf, close));
    if (!saw_root) return make_error(Errc::io, "the answer to a listing is not a ListBucketResult");
    if (!missing.empty()) return make_error(Errc::io, fmt::format("a listing's Contents has no {}", missing));
    if (!size_error.empty()) return make_error(Errc::io, fmt::format("a listing gives the size '{}'", size_error));
    if (!saw_truncated) return make_error(Errc::io, "a listing does not say whether it IsTruncated");
    if (page.truncated && page.next_token.empty())
        return make_error(Errc::io, "a listing is truncated but gives no NextContinuationToken");
    return page;
}

ErrorDoc parse_error(std::string_view xml) {
    ErrorDoc doc;
    auto leaf = [&](const std::string& path, std::string text) {
        if (path == "Error/Code") doc.code = std::move(text);
        else if (path == "Error/Message") doc.message = std::move(text);
    };
    if (!walk_xml(xml, leaf, [](const std::string&) {})) return {};
    return doc;
}

}  // namespace dvol::remote::s3
