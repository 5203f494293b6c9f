#include <catch2/catch.hpp>

#include <string>

#include "diff/text_diff.h"

using namespace dvol;

namespace {

bool has_line(const std::string& text, const std::string& line) {
    size_t pos = 0;
    while (pos <= text.size()) {
        size_t end = text.find('\n', pos);
        if (end == std::string::npos) end = text.size();
        if (text.compare(pos, end - pos, line) == 0 && end - pos == line.size()) return true;
        pos = end + 1;
    }
    return false;
}

}  // namespace

TEST_CASE("unified diff of a simple change", "[text_diff]") {
    std::string old_text = "one\ntwo\nthree\nfour\nfive\nsix\nseven\neight\nnine\nten\n";
    std::string new_text = "one\ntwo\nthree\nfour\nFIVE\nsix\nseven\neight\nnine\nten\n";
    auto d = unified_diff("dir/file.txt", old_text, 0644, new_text, 0644);
    REQUIRE(d);
    INFO(*d);
    CHECK(has_line(*d, "--- a/dir/file.txt"));
    CHECK(has_line(*d, "+++ b/dir/file.txt"));
    CHECK(d->find("\n@@ -2,7 +2,7 @@") != std::string::npos);
    CHECK(has_line(*d, "-five"));
    CHECK(has_line(*d, "+FIVE"));
    CHECK(has_line(*d, " two"));   // three lines of context
    CHECK(has_line(*d, " eight"));
    CHECK_FALSE(has_line(*d, " one"));
    CHECK_FALSE(has_line(*d, " nine"));
    CHECK(d->find("--- a/") < d->find("+++ b/"));
    CHECK(d->find("+++ b/") < d->find("@@"));
}

TEST_CASE("unified diff honours the context size", "[text_diff]") {
    std::string old_text = "a\nb\nc\nd\ne\n", new_text = "a\nb\nX\nd\ne\n";
    auto d = unified_diff("f", old_text, 0644, new_text, 0644, 0);
    REQUIRE(d);
    INFO(*d);
    CHECK(has_line(*d, "-c"));
    CHECK(has_line(*d, "+X"));
    CHECK_FALSE(has_line(*d, " b"));
    CHECK_FALSE(has_line(*d, " d"));
}

TEST_CASE("unified diff of an added and a deleted file", "[text_diff]") {
    auto added = unified_diff("new.txt", std::nullopt, 0, std::string("hello\nworld\n"), 0644);
    REQUIRE(added);
    INFO(*added);
    CHECK(has_line(*added, "--- /dev/null"));
    CHECK(has_line(*added, "+++ b/new.txt"));
    CHECK(has_line(*added, "+hello"));
    CHECK(has_line(*added, "+world"));
    CHECK(added->find("\n@@ -0,0 +1,2 @@") != std::string::npos);

    auto deleted = unified_diff("old.txt", std::string("bye\n"), 0644, std::nullopt, 0);
    REQUIRE(deleted);
    INFO(*deleted);
    CHECK(has_line(*deleted, "--- a/old.txt"));
    CHECK(has_line(*deleted, "+++ /dev/null"));
    CHECK(has_line(*deleted, "-bye"));
}

TEST_CASE("unified diff gives each side's mode as git does", "[text_diff]") {
    auto added = unified_diff("run.sh", std::nullopt, 0, std::string("echo\n"), 0755);
    REQUIRE(added);
    INFO(*added);
    CHECK(has_line(*added, "new file mode 100755"));
    auto deleted = unified_diff("secret", std::string("x\n"), 0600, std::nullopt, 0);
    REQUIRE(deleted);
    INFO(*deleted);
    CHECK(has_line(*deleted, "deleted file mode 100644"));
    auto changed = unified_diff("run.sh", std::string("a\n"), 0755, std::string("b\n"), 0644);
    REQUIRE(changed);
    INFO(*changed);
    CHECK(has_line(*changed, "old mode 100755"));
    CHECK(has_line(*changed, "new mode 100644"));
    CHECK(changed->find("old mode") < changed->find("--- a/run.sh"));
    auto same_mode = unified_diff("run.sh", std::string("a\n"), 0755, std::string("b\n"), 0700);
    REQUIRE(same_mode);
    INFO(*same_mode);
    CHECK_FALSE(has_line(*same_mode, "old mode 100755"));
    CHECK(same_mode->find(" 100755\n") != std::string::npos);  // on the index line
}

TEST_CASE("unified diff of equal texts is empty", "[text_diff]") {
    auto d = unified_diff("same", std::string("x\ny\n"), 0644, std::string("x\ny\n"), 0644);
    REQUIRE(d);
    CHECK(d->empty());
}

TEST_CASE("unified diff marks a missing final newline", "[text_diff]") {
    auto d = unified_diff("f", std::string("a\nb"), 0644, std::string("a\nc"), 0644);
    REQUIRE(d);
    INFO(*d);
    CHECK(has_line(*d, "-b"));
    CHECK(has_line(*d, "+c"));
    CHECK(d->find("\\ No newline at end of file") != std::string::npos);
}

TEST_CASE("looks_binary", "[text_diff]") {
    CHECK_FALSE(looks_binary(""));
    CHECK_FALSE(looks_binary("plain text\nwith lines\n"));
    CHECK_FALSE(looks_binary("caf\xc3\xa9 \x01\x02\x7f\xff"));
    CHECK(looks_binary(std::string("a\0b", 3)));
    CHECK(looks_binary(std::string(1, '\0')));
    std::string late(8000, 'x');
    late[7999] = '\0';
    CHECK(looks_binary(late));
    std::string later(9000, 'x');
    later[8000] = '\0';  // beyond the first 8000 bytes: git calls it text
    CHECK_FALSE(looks_binary(later));
}
