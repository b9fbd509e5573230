#!/bin/sh
# The rollout's health check: run by kiln in this directory, without a shell of its own, with
# KILN_ADDRESS, KILN_INSTANCE_ID, KILN_PRIVATE_IP, KILN_PUBLIC_IP, KILN_HOSTNAME and KILN_REGION
# set. Exit 0 when the member serves; kiln retries every `interval` until `timeout`.
# Against a real tenancy, probe the service, e.g.:
#   exec curl -fsS --max-time 5 "http://$KILN_PRIVATE_IP:8080/healthz"
echo "$KILN_ADDRESS ($KILN_INSTANCE_ID) at $KILN_PRIVATE_IP is up"
