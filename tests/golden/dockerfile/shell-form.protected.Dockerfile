FROM python:3.12-slim
RUN pip install --no-cache-dir gunicorn
COPY app/ /srv/app/
WORKDIR /srv
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
# gunicorn replaces the shell; the defender goes in front of the shell
# Start under the runtime defense (added by `defender dockerfile embed`).
COPY defender /opt/defender/defender
ENTRYPOINT ["/opt/defender/defender", "run", "--", "/bin/bash", "-o", "pipefail", "-c", "exec gunicorn     --bind 0.0.0.0:8000 app:wsgi"]
# A heredoc body is not an instruction, whatever its lines look like.
RUN <<-NOTES cat > /srv/NOTES
	ENTRYPOINT ["/not/this/one"]
	NOTES
HEALTHCHECK CMD curl -f http://localhost:8000/ || exit 1
