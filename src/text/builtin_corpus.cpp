#include "spdit/text/vocab_writers.h"

namespace spdit::text {

const std::string& builtin_text_corpus() {
  // Prompt-like English with punctuation, contractions and an accent: enough
  // for merges and pieces that real prompts reuse. Same text as
  // scripts/reference/text_corpus.txt (the fixtures were learned from it).
  static const std::string corpus =
      R"(a photo of a red fox in the snow, sitting on a rock at sunrise.
a painting of a cat on the mat, in the style of an old master.
the quick brown fox jumps over the lazy dog; the dog sleeps in the sun.
an astronaut riding a horse on the moon, highly detailed, 4k, digital art.
a bowl of fruit on a wooden table: apples, pears, grapes and a lemon.
a city street at night in the rain, neon lights reflected on the road.
portrait of an old man with a white beard, soft light, photograph.
a small house in the mountains, with a garden of flowers and a river.
it's a sunny day at the beach; people are walking on the sand and swimming in the sea.
we've seen the forest in autumn: red, orange and yellow leaves on the trees.
she'll paint the ocean and the sky, blue and green, with a boat on the water.
they're standing in front of the castle, under a cloudy sky, in winter.
a café in paris, with tables on the street and a man reading the news.
the train goes through the valley, over the bridge and into the tunnel.
a robot and a child play with a ball in the park, cartoon style.
)";
  return corpus;
}

}  // namespace spdit::text
