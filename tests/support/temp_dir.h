#pragma once
// A fresh folder under /tmp for one test, removed with everything in it.
#include <stdlib.h>

#include <cstdlib>
#include <filesystem>
#include <string>

namespace spdit::test {

struct TempDir {
  std::string path;
  TempDir() {
    char tmpl[] = "/tmp/spdit-test-XXXXXX";
    path = mkdtemp(tmpl);
  }
  ~TempDir() {
    std::error_code ignored;  // a test's failure says more than a leftover folder
    std::filesystem::remove_all(path, ignored);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
};

}  // namespace spdit::test
