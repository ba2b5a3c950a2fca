"""One module per command: argparse wiring (add_parser) and the glue to the work modules."""
