# The Airflow image of docker-compose.yaml: Airflow 3.3.2 with our lock, Pango for WeasyPrint, and
# the project's package and templates (dags/ and plugins/ are also mounted for development).
FROM apache/airflow:3.3.2-python3.11

USER root
RUN apt-get update \
 && apt-get install -y --no-install-recommends libpango-1.0-0 libpangoft2-1.0-0 libharfbuzz-subset0 \
 && apt-get clean && rm -rf /var/lib/apt/lists/*
USER airflow

COPY requirements.txt /opt/jobqueue/requirements.txt
RUN pip install --no-cache-dir -r /opt/jobqueue/requirements.txt
COPY --chown=airflow:root include /opt/airflow/include
COPY --chown=airflow:root plugins /opt/airflow/plugins
COPY --chown=airflow:root dags /opt/airflow/dags
