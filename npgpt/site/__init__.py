"""The course as a website (``python -m npgpt site build|serve|check``): :mod:`.build` makes it from
the committed notebooks, :mod:`.check` reads every page in a headless Chromium. Needs the tools of
requirements-site.txt; nothing of npgpt's library imports this package."""
