FROM nginx:1.27
COPY site/ /usr/share/nginx/html/
CMD nginx -g 'daemon off;' -e stderr
# Start under the runtime defense (added by `defender dockerfile embed`).
COPY defender /opt/defender/defender
ENTRYPOINT ["/opt/defender/defender", "run", "--", "/docker-entrypoint.sh"]
