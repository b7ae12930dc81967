"""``python -m saliscope`` runs the command line."""

from saliscope.cli.main import main

if __name__ == "__main__":
    main()
