#!/bin/sh
# The sample task's entry script (what the seed's matthewabq/twistlock-fargate-auto image does):
# run mkdir, make an outbound request with wget, then sleep for 5 minutes and exit.
#
# Programs are started by path: busybox's shell runs a bare `mkdir` as an in-process applet, with
# no exec for an exec-based defense (or any other) to see.

# docker stop / ECS send TERM: the defender forwards it here; leave at once, as a TERM'd shell
# would (128 + 15).
trap 'echo "sample: TERM received, exiting"; exit 143' TERM

echo "sample: mkdir /tmp/twistlock-test"
/bin/mkdir /tmp/twistlock-test
echo "sample: mkdir exited $?"

echo "sample: wget http://www.example.com/"
/usr/bin/wget -q -T 5 -t 1 -O /dev/null http://www.example.com/
echo "sample: wget exited $?"

echo "sample: sleeping"
# In the background and waited for, so that the trap runs as soon as TERM arrives.
/bin/sleep 300 &
wait $!
echo "sample: done"
