"""The stack (infra/template.yaml) deployed into a moto server, and what AWS hands its functions.

``deploy`` creates the expanded template as a CloudFormation stack against whatever moto server
``AWS_ENDPOINT_URL`` names, and returns its outputs and the environment the functions run with.
The image functions get the image ``sam build`` would push; a zip function (the reference
authorizer) the zip of its folder in an artifacts bucket, as ``sam package`` uploads it.
``scheduler_event`` is the Scheduler target's input from the template, filled in as EventBridge
Scheduler fills it. ``subscribe`` and ``drain`` read what the incident topic published, through an
SQS queue subscribed to it. ``create_glue_job`` creates the stack's Glue job, which moto's
CloudFormation skips, in moto's Glue: its properties from the template, resolved as
CloudFormation resolves them (``resolve``).
"""

from __future__ import annotations

import io
import json
import re
import warnings
import zipfile
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import boto3

from tests.conftest import REPO

TEMPLATE = REPO / "infra" / "template.yaml"
ACCOUNT = "123456789012"  # moto's default account
IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/tenantwatch:test"
ARTIFACTS = "tenantwatch-artifacts"  # where `sam package` puts a zip function's code
# The Contributor Insights rules of the access log group: rule -> (key, what it counts).
INSIGHT_RULES = {
    "AuthorizationFailuresByTenantRule": ("tenant", "failures"),
    "AuthorizationFailuresByUserRule": ("principal", "failures"),
    "CacheMissesByTenantRule": ("tenant", "misses"),
    "CacheMissesByUserRule": ("principal", "misses"),
}


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
    name: str = "tw"
    parameters: dict[str, str] = field(default_factory=dict)  # as given to create_stack


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
    given = {"TrailBucketName": trail_bucket, **parameters}
    return Stack(outputs, env, expanded, st["StackStatus"], created, name, given)


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


# --- resources moto's CloudFormation skips, created as CloudFormation would -------------------


class _Resolver:
    """The intrinsic functions of the expanded template, given the stack as moto created it.
    A name nothing resolves stays ``${Name}`` in a ``Fn::Sub``, as moto leaves it."""

    def __init__(self, st: Stack) -> None:
        tpl = st.template
        self.params = {k: str(v.get("Default", "")) for k, v in tpl["Parameters"].items()}
        self.params.update(st.parameters)
        self.params.update(
            {
                "AWS::Region": "us-east-1",
                "AWS::AccountId": ACCOUNT,
                "AWS::Partition": "aws",
                "AWS::StackName": st.name,
            }
        )
        resources = boto3.client("cloudformation").list_stack_resources(StackName=st.name)
        self.physical = {
            r["LogicalResourceId"]: r["PhysicalResourceId"]
            for r in resources["StackResourceSummaries"]
            if r.get("LogicalResourceId")
        }
        self.types = {k: r["Type"] for k, r in tpl["Resources"].items()}
        self.conditions = tpl.get("Conditions", {})

    def ref(self, name: str) -> str | None:
        if name in self.params:
            return self.params[name]
        return self.physical.get(name)

    def arn(self, name: str) -> str | None:
        pid = self.physical.get(name)
        if pid is None:
            return None
        if self.types[name] == "AWS::IAM::Role":
            return str(boto3.client("iam").get_role(RoleName=pid)["Role"]["Arn"])
        if self.types[name] == "AWS::S3::Bucket":
            return f"arn:aws:s3:::{pid}"
        return pid

    def condition(self, expr: Any) -> bool:
        if isinstance(expr, str):
            return self.condition(self.conditions[expr])
        ((fn, arg),) = expr.items()
        if fn == "Fn::Equals":
            a, b = (self.value(x) for x in arg)
            return str(a) == str(b)
        if fn == "Fn::Not":
            return not self.condition(arg[0])
        if fn == "Fn::And":
            return all(self.condition(x) for x in arg)
        if fn == "Fn::Or":
            return any(self.condition(x) for x in arg)
        if fn == "Condition":
            return self.condition(arg)
        raise ValueError(f"condition {fn} not handled")

    def sub(self, text: str, names: dict[str, Any]) -> str:
        def one(m: re.Match[str]) -> str:
            name = m.group(1)
            if name.startswith("!"):
                return "${" + name[1:] + "}"
            if name in names:
                return str(names[name])
            got = self.arn(name.removesuffix(".Arn")) if name.endswith(".Arn") else self.ref(name)
            return m.group(0) if got is None else got

        return re.sub(r"\$\{([^}]+)\}", one, text)

    def value(self, v: Any) -> Any:
        if isinstance(v, list):
            return [x for x in (self.value(i) for i in v) if x is not _NO_VALUE]
        if not isinstance(v, dict):
            return v
        if len(v) == 1:
            ((fn, arg),) = v.items()
            if fn == "Ref":
                return _NO_VALUE if arg == "AWS::NoValue" else self.ref(arg)
            if fn == "Fn::Sub":
                text, names = (arg, {}) if isinstance(arg, str) else arg
                return self.sub(text, {k: self.value(x) for k, x in names.items()})
            if fn == "Fn::If":
                cond, yes, no = arg
                return self.value(yes if self.condition(cond) else no)
            if fn == "Fn::GetAtt":
                name, attr = arg if isinstance(arg, list) else arg.split(".", 1)
                assert attr == "Arn", attr
                return self.arn(name)
        out = {k: self.value(x) for k, x in v.items()}
        return {k: x for k, x in out.items() if x is not _NO_VALUE}


_NO_VALUE = object()


def resolve(st: Stack, value: Any) -> Any:
    """``value`` (a piece of the expanded template) with its intrinsic functions resolved."""
    return _Resolver(st).value(value)


def create_glue_job(st: Stack, logical_id: str = "GlueJob") -> dict[str, Any]:
    """The template's Glue job created in moto's Glue as CloudFormation would create it (moto's
    CloudFormation skips the type); returns its resolved properties."""
    props: dict[str, Any] = resolve(st, st.template["Resources"][logical_id]["Properties"])
    for key in ("Timeout", "NumberOfWorkers", "MaxRetries"):  # Number parameters, as numbers
        if key in props:
            props[key] = int(props[key])
    boto3.client("glue").create_job(**props)
    return props
