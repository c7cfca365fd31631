"""The development tooling: `make run` (stack.py), its local PostgreSQL (localpg.py) and mail sink
(mailsink.py), the Airflow settings it applies (airflow_env.py), and the running-stack harness
the end-to-end tests and the benchmarks share (harness.py). Apart from `jobqueue`, the package every
Airflow component imports: none of this runs inside Airflow."""
