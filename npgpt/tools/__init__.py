"""Tools around the models: gradient checking, parameter counting, benchmarks (with the PyTorch
twin they compare against), analysis and plotting. Imported by module (``npgpt.tools.bench``),
so that matplotlib and torch load only when a tool that needs them is used."""
