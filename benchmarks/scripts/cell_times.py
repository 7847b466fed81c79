"""Wall time of each code cell of a notebook, executed with nbclient (run from the repository root, inline backend).

Usage: MPLBACKEND=module://matplotlib_inline.backend_inline python benchmarks/scripts/cell_times.py NOTEBOOK [OUT.ipynb]"""
import sys, time
import nbformat
from nbclient import NotebookClient
path = sys.argv[1]
nb = nbformat.read(path, as_version=4)
client = NotebookClient(nb, timeout=900, kernel_name="python3", resources={"metadata": {"path": "notebooks"}})
times = []
with client.setup_kernel():
    for i, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        t = time.perf_counter()
        client.execute_cell(cell, i)
        dt = time.perf_counter() - t
        times.append((i, dt))
        print(f"cell {i:>2}: {dt:7.2f} s  {cell.source.splitlines()[0][:70]}", flush=True)
print(f"total {sum(d for _, d in times):.1f} s")
if len(sys.argv) > 2:
    nbformat.write(nb, sys.argv[2])
