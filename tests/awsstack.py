"""The stack (infra/template.yaml) deployed into a moto server, and what AWS hands its functions.

``deploy`` creates the expanded template as a CloudFormation stack against whatever moto server
``AWS_ENDPOINT_URL`` names, and returns its outputs and the environment the functions run with.
The image functions get the image ``sam build`` would push; a zip function (the reference
authorizer) the zip of its folder in an artifacts bucket, as ``sam package`` uploads it.
``scheduler_event`` is the Scheduler target's input from the template, filled in as EventBridge
Scheduler fills it. ``subscribe`` and ``drain`` read what the incident topic published, through an
SQS queue subscribed to it.
"""

from __future__ import annotations

import io
import json
import warnings
import zipfile
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import boto3

from tests.conftest import REPO

TEMPLATE = REPO / "infra" / "template.yaml"
ACCOUNT = "123456789012"  # moto's default account
IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/tenantwatch:test"
ARTIFACTS = "tenantwatch-artifacts"  # where `sam package` puts a zip function's code


def template() -> dict[str, Any]:
    from samtranslator.yaml_helper import yaml_parse

    doc: dict[str, Any] = yaml_parse(TEMPLATE.read_text())
    return doc


def expand() -> dict[str, Any]:
    """The template as CloudFormation sees it after the SAM transform (``sam deploy``)."""
    from samtranslator.translator.transform import transform

    doc = template()
    for name, r in doc["Resources"].items():
        if r["Type"] != "AWS::Serverless::Function":
            continue
        if r["Properties"].get("PackageType") == "Image":
            r["Properties"]["ImageUri"] = IMAGE  # what `sam build` pushes and fills in
        else:
            r["Properties"]["CodeUri"] = f"s3://{ARTIFACTS}/{name}.zip"

    class NoManagedPolicies:
        def load(self) -> dict[str, str]:
            return {}

    expanded: dict[str, Any] = transform(doc, {}, NoManagedPolicies())
    return expanded


@dataclass
class Stack:
    outputs: dict[str, str]
    env: dict[str, str]  # the scheduled function's environment variables
    template: dict[str, Any]  # the expanded template
    status: str
    created: set[str]  # logical ids of the resources moto created


def deploy(trail_bucket: str, parameters: dict[str, str], name: str = "tw") -> Stack:
    """Create the trail bucket (it exists before tenantwatch does) and the stack."""
    boto3.client("s3").create_bucket(Bucket=trail_bucket)
    _upload_zips()
    expanded = expand()
    cf = boto3.client("cloudformation")
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Tried to parse", category=UserWarning)
        cf.create_stack(
            StackName=name,
            TemplateBody=json.dumps(expanded),
            Parameters=[
                {"ParameterKey": k, "ParameterValue": v}
                for k, v in {"TrailBucketName": trail_bucket, **parameters}.items()
            ],
            Capabilities=["CAPABILITY_IAM"],
        )
    st = cf.describe_stacks(StackName=name)["Stacks"][0]
    created = {
        r["LogicalResourceId"]
        for r in cf.list_stack_resources(StackName=name)["StackResourceSummaries"]
        if r.get("LogicalResourceId")  # moto lists what it skipped without one
    }
    outputs = {o["OutputKey"]: o["OutputValue"] for o in st.get("Outputs", [])}
    env: dict[str, str] = {}
    if "ScheduledFunctionName" in outputs:
        fn = boto3.client("lambda").get_function(FunctionName=outputs["ScheduledFunctionName"])
        env = {k: str(v) for k, v in fn["Configuration"]["Environment"]["Variables"].items()}
    return Stack(outputs, env, expanded, st["StackStatus"], created)


def _upload_zips() -> None:
    """Each zip function's folder (its ``CodeUri``), zipped into the artifacts bucket."""
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket=ARTIFACTS)
    for name, r in template()["Resources"].items():
        props = r.get("Properties", {})
        if r["Type"] != "AWS::Serverless::Function" or props.get("PackageType") == "Image":
            continue
        folder = TEMPLATE.parent / props["CodeUri"]
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as z:
            for f in sorted(folder.rglob("*.py")):
                z.write(f, f.relative_to(folder).as_posix())
        s3.put_object(Bucket=ARTIFACTS, Key=f"{name}.zip", Body=buf.getvalue())


def _z(ts: datetime) -> str:
    return ts.strftime("%Y-%m-%dT%H:%M:%SZ")


def scheduler_event(expanded: dict[str, Any], when: datetime, execution_id: str) -> Any:
    """The Scheduler target's input from the expanded template, with the context attributes
    filled in the way EventBridge Scheduler fills them."""
    schedule = next(
        r for r in expanded["Resources"].values() if r["Type"] == "AWS::Scheduler::Schedule"
    )
    text = schedule["Properties"]["Target"]["Input"]["Fn::Sub"]
    for placeholder, value in {
        "${AWS::AccountId}": ACCOUNT,
        "${AWS::Region}": "us-east-1",
        "<aws.scheduler.execution-id>": execution_id,
        "<aws.scheduler.scheduled-time>": _z(when),
        "<aws.scheduler.schedule-arn>": f"arn:aws:scheduler:us-east-1:{ACCOUNT}:schedule/tw",
        "<aws.scheduler.attempt-number>": "1",
    }.items():
        text = text.replace(placeholder, value)
    return json.loads(text)


def subscribe(topic_arn: str, queue: str = "oncall") -> str:
    """An SQS queue subscribed to the topic; returns its URL."""
    sqs = boto3.client("sqs")
    url: str = sqs.create_queue(QueueName=queue)["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]
    boto3.client("sns").subscribe(TopicArn=topic_arn, Protocol="sqs", Endpoint=arn["QueueArn"])
    return url


def drain(url: str) -> list[dict[str, Any]]:
    """Every message in the queue (SNS envelopes), removed from it."""
    sqs = boto3.client("sqs")
    out: list[dict[str, Any]] = []
    while True:
        got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", [])
        if not got:
            return out
        for m in got:
            out.append(json.loads(m["Body"]))
        sqs.delete_message_batch(
            QueueUrl=url,
            Entries=[
                {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(got)
            ],
        )
