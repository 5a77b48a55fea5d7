#pragma once
// Tests of what loads the SentencePiece module (the T5 tokenizer and its
// writer): it is opened with RTLD_DEEPBIND (src/text/sentencepiece_loader.cpp
// says why), which AddressSanitizer refuses, so under ASan they skip.
#include <gtest/gtest.h>

#if defined(__SANITIZE_ADDRESS__)
#define SPDIT_SKIP_WITHOUT_SENTENCEPIECE() \
  GTEST_SKIP()                             \
      << "the SentencePiece module is loaded with RTLD_DEEPBIND, which AddressSanitizer refuses"
#else
#define SPDIT_SKIP_WITHOUT_SENTENCEPIECE() (void)0
#endif
