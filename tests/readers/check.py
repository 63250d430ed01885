"""Reads a gradlab results folder with every reader researchers use (pyarrow, pandas, Python
polars, DuckDB) and does what they do with it: read each table through its folder and glob,
filter, sort and join. Run by tests/readers.rs: `python3 tests/readers/check.py DIR`.

Prints `checked <reader>` or `missing <reader>` per reader; exits non-zero on a failed check.
The folder is a sweep over cell x depth, so a table whose schema depended on the depth fails.
"""
import importlib
import sys

d = sys.argv[1]
TABLES = ["runs", "steps", "layers", "flow", "spectrum"]
KEYS = {"runs": ["run_id"], "steps": ["run_id", "step"], "layers": ["run_id", "step", "layer"],
        "flow": ["run_id", "step", "layer", "lag", "source"],
        "spectrum": ["run_id", "step", "layer", "kind", "index"]}


def have(name):
    try:
        importlib.import_module(name)
        return True
    except ImportError:
        print(f"missing {name}")
        return False


def check_pyarrow():
    import pyarrow as pa
    import pyarrow.dataset as ds
    import pyarrow.parquet as pq

    runs = pq.read_table(f"{d}/runs")
    n = runs.num_rows
    for table in TABLES:
        t = pq.read_table(f"{d}/{table}")
        assert t.num_rows > 0, table
        for field in t.schema:
            assert not pa.types.is_string_view(field.type), f"{table}.{field.name}: string_view"
            assert not pa.types.is_binary_view(field.type), f"{table}.{field.name}: binary_view"
        for key in KEYS[table]:
            assert not t.schema.field(key).nullable, f"{table}.{key} is nullable"
        # Every file has the schema of the dataset: nothing is dropped or unified away.
        files = ds.dataset(f"{d}/{table}", format="parquet").files
        schemas = {str(pq.read_schema(f).remove_metadata()) for f in files}
        assert len(schemas) == 1, f"{table}: {len(schemas)} schemas over {len(files)} files"
        t.sort_by([(k, "ascending") for k in KEYS[table]])
    # The calls the issue saw fail on string_view.
    seed0 = pq.read_table(f"{d}/runs", filters=[("seed", "=", 0)])
    assert 0 < seed0.num_rows < n, seed0.num_rows
    lstm = pq.read_table(f"{d}/runs", filters=[("cell", "=", "lstm")])
    assert 0 < lstm.num_rows < n, lstm.num_rows
    assert runs.sort_by("run_id").column("run_id").to_pylist() == sorted(
        runs.column("run_id").to_pylist())
    layers = pq.read_table(f"{d}/layers")
    joined = layers.join(runs.select(["run_id", "cell", "depth"]), "run_id")
    assert joined.num_rows == layers.num_rows
    deep = pq.read_table(f"{d}/layers", filters=[("layer", "=", 1)])
    depth2 = pq.read_table(f"{d}/runs", filters=[("depth", "=", 2)])
    assert set(deep.column("run_id").to_pylist()) == set(depth2.column("run_id").to_pylist())
    # Numeric axes stay numeric.
    assert pa.types.is_integer(runs.schema.field("truncation_k").type)
    assert pa.types.is_floating(runs.schema.field("clip_threshold").type)


def check_pandas():
    import pandas as pd

    runs = pd.read_parquet(f"{d}/runs", dtype_backend="numpy_nullable")
    steps = pd.read_parquet(f"{d}/steps")
    merged = steps.merge(runs[["run_id", "cell", "depth"]], on="run_id")
    assert len(merged) == len(steps)
    assert str(runs["truncation_k"].dtype) == "Int64", runs["truncation_k"].dtype
    assert len(runs[runs["cell"] == "lstm"].sort_values("run_id")) > 0


def check_polars():
    import polars as pl

    for table in TABLES:
        df = pl.read_parquet(f"{d}/{table}/*.parquet")
        assert df.height > 0, table
    layers = pl.read_parquet(f"{d}/layers/*.parquet")
    runs = pl.read_parquet(f"{d}/runs/*.parquet")
    per_depth = (layers.join(runs.select("run_id", "depth"), on="run_id")
                 .group_by("depth").agg(pl.col("layer").max()).sort("depth"))
    assert per_depth["layer"].to_list() == [0, 1], per_depth
    assert runs.schema["truncation_k"] == pl.Int64


def check_duckdb():
    import duckdb

    for table in TABLES:
        [(count,)] = duckdb.sql(f"SELECT count(*) FROM '{d}/{table}/*.parquet'").fetchall()
        assert count > 0, table
    rows = duckdb.sql(
        f"SELECT r.depth, max(l.layer) FROM '{d}/layers/*.parquet' l "
        f"JOIN '{d}/runs/*.parquet' r USING (run_id) GROUP BY r.depth ORDER BY r.depth"
    ).fetchall()
    assert rows == [(1, 0), (2, 1)], rows
    [(lstm,)] = duckdb.sql(
        f"SELECT count(*) FROM '{d}/runs/*.parquet' WHERE cell = 'lstm' AND seed = 0"
    ).fetchall()
    assert lstm > 0
    [(tagged,)] = duckdb.sql(
        f"SELECT count(*) FROM '{d}/runs/*.parquet' WHERE list_contains(tags, 'readers')"
    ).fetchall()
    assert tagged > 0, "the spec's tag is not found"
    # The Lyapunov spectrum of an LSTM layer has 2H exponents (the joint (h, c)), an RNN's H.
    rows = duckdb.sql(
        f"SELECT r.cell, r.hidden, count(*) FROM '{d}/spectrum/*.parquet' s "
        f"JOIN '{d}/runs/*.parquet' r USING (run_id) WHERE s.kind = 'lyapunov' AND s.step = 0 "
        f"AND s.layer = 0 GROUP BY r.cell, r.hidden, s.run_id ORDER BY 1"
    ).fetchall()
    assert rows and all(n == (2 if cell == "lstm" else 1) * h for cell, h, n in rows), rows


for reader, check in [("pyarrow", check_pyarrow), ("pandas", check_pandas),
                      ("polars", check_polars), ("duckdb", check_duckdb)]:
    if have(reader):
        check()
        print(f"checked {reader}")
