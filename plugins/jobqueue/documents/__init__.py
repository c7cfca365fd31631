"""The document job type, `generate_pdf`: render_pdf >> enqueue_email.

pdf.py: the payload, the invoice maths, the safe URL fetcher and the pool of render processes;
worker.py: one render process; steps.py: the job type's two steps.
"""
