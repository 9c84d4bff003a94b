"""The render appliance service: JSON API + console (NiceGUI), job store, queue, worker, result storage.

Data path: api.py -> jobs.py (render_jobs, the system of record) -> queue.py (Huey, job ids only) -> worker.py
(download -> pipeline -> upload). config.py turns config.toml + environment into one Settings object; server.py
runs it all as one process (`render-appliance serve`).
"""
