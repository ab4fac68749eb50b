"""`python -m packd.results_doc README.md PAGE...`: splice the pages' run times into the README."""

from packd.results_doc.runtimes import main

if __name__ == "__main__":
    main()
