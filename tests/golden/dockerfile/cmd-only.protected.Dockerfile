FROM scratch
COPY server /server
COPY static/ /static/
CMD ["/server", "--listen", ":8080"]
# Start under the runtime defense (added by `defender dockerfile embed`).
COPY defender /opt/defender/defender
ENTRYPOINT ["/opt/defender/defender", "run", "--"]
