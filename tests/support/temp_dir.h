#pragma once
// A fresh folder under /tmp for one test, removed with everything in it.
#include <stdlib.h>

#include <cstdlib>
#include <string>

namespace spdit::test {

struct TempDir {
  std::string path;
  TempDir() {
    char tmpl[] = "/tmp/spdit-test-XXXXXX";
    path = mkdtemp(tmpl);
  }
  ~TempDir() { std::system(("rm -rf '" + path + "'").c_str()); }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
};

}  // namespace spdit::test
