"""Past one machine: pools and scores as parquet shards keyed by global row index.

`layout` fixes the file names and the row-index column every sharded step shares.
"""
