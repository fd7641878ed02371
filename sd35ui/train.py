"""`python -m sd35ui.train`, the command earlier READMEs gave: runs `sd35ui.models.train`, where training lives now."""

from sd35ui.models.train import main

if __name__ == "__main__":
    raise SystemExit(main())
