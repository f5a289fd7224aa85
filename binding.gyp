{
  "targets": [
    {
      "target_name": "image_classifier_native",
      "sources": ["native/addon.c", "native/conv.c", "native/batch-norm.c", "native/relu.c", "native/pool.c"],
      "cflags": ["-O3", "-fopenmp", "-ffp-contract=fast", "-fno-math-errno", "-Wall"],
      "ldflags": ["-fopenmp"]
    }
  ]
}
