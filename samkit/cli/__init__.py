"""The ``samkit`` command line: :mod:`samkit.cli.main` builds the parser from one module per
command family (``image``, ``demo``, ``engine``, ``video``, ``train``, ``evaluate``) and runs a
command; :mod:`samkit.cli.common` holds the arguments they share. Only this package uses argparse.
"""
