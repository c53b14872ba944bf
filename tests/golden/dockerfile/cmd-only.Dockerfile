FROM scratch
COPY server /server
COPY static/ /static/
CMD ["/server", "--listen", ":8080"]
