"""The benchmark behind `nox -s bench`: run.py says what it measures, in what order.

wrk.py drives and reads wrk, server.py starts uvicorn and reads its memory from /proc;
ceiling.py and seed.py run inside the generated project's environment, the .lua files are
wrk scripts.
"""
