"""The ``saliscope`` command line: entry point ``saliscope.cli.main:main``, click group ``saliscope.cli.main:cli``.

Nothing is re-exported here: a package attribute named ``main`` would hide the ``main`` submodule.
"""
