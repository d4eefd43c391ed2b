"""Create the artifact bucket on the S3-compatible store, once, waiting for the store to accept requests.

compose.yaml's `s3-init` service runs this with the scifolio image (boto3 is in the lock), so no
separate client image is needed. Credentials and the endpoint come from the environment only.
"""

import os
import sys
import time

import boto3
from botocore.exceptions import BotoCoreError, ClientError

BUCKET = os.environ.get("S3_BUCKET", "mlflow")  # the bucket compose.yaml's --artifacts-destination names
WAIT_S = 60  # the store starts in seconds; a minute without an answer is a real failure

s3 = boto3.client("s3", endpoint_url=os.environ["MLFLOW_S3_ENDPOINT_URL"])
deadline = time.monotonic() + WAIT_S
while True:
    try:
        existing = {b["Name"] for b in s3.list_buckets().get("Buckets", [])}
        if BUCKET not in existing:
            s3.create_bucket(Bucket=BUCKET)
        print(f"bucket {BUCKET} ready")
        sys.exit(0)
    except (BotoCoreError, ClientError) as err:
        if time.monotonic() > deadline:
            sys.exit(f"the S3 store did not answer within {WAIT_S} s: {err}")
        time.sleep(2)
