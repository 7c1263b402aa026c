"""The account's own people and machines: SSO admins in the console, CI deploys, a monitoring
integration polling Describe*/List*, and AWS services acting for them. This is what makes the
event-source mix look like a real account rather than only tenant data events."""

from __future__ import annotations

import random
from datetime import date
from typing import Any

from pipeline.simulate import ids
from pipeline.simulate.cloudtrail import CloudTrail, Identity, sts_expiration
from pipeline.simulate.world import World

DATADOG_ACCOUNT = "464622532012"
CONSOLE_UA = "AWS Internal"
BROWSER_UA = (
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/130.0.0.0 Safari/537.36"
)
DATADOG_UA = "Datadog/1.0 aws-sdk-go/1.55.5 (go1.22.7; linux; amd64)"
GITHUB_UA = (
    "aws-sdk-js/3.687.0 ua/2.1 os/linux#6.5.0-1025-azure lang/js md/nodejs#20.18.0 "
    "api/cloudformation#3.687.0"
)
KMS_KEY = "key/5e1c2b7a-0f3d-4c8e-9a61-3b2d7f4e8c10"
JWT_KEY_ARN_TAIL = "secret:prod/tenant-api/jwt-signing-key-Ab12Cd"
ADMINS = ("alice@acme-saas.example", "bob@acme-saas.example", "chen@acme-saas.example")

Read = tuple[str, str, dict[str, Any] | None]


def reads(bucket: str, table: str) -> tuple[Read, ...]:
    """(eventSource, eventName, requestParameters) read-only calls people and tools make all day,
    on the platform's own bucket and table."""
    return (
        ("ec2.amazonaws.com", "DescribeInstances", {"instancesSet": {}, "filterSet": {}}),
        ("ec2.amazonaws.com", "DescribeSecurityGroups", {"securityGroupSet": {}, "filterSet": {}}),
        ("ec2.amazonaws.com", "DescribeVpcs", {"vpcSet": {}, "filterSet": {}}),
        ("lambda.amazonaws.com", "ListFunctions20150331", None),
        ("lambda.amazonaws.com", "GetFunction20150331v2", {"functionName": "tenant-authorizer"}),
        ("iam.amazonaws.com", "ListRoles", None),
        ("iam.amazonaws.com", "GetRole", {"roleName": "tenant-scoped-access"}),
        ("iam.amazonaws.com", "ListAttachedRolePolicies", {"roleName": "tenant-analytics"}),
        ("logs.amazonaws.com", "DescribeLogGroups", None),
        (
            "logs.amazonaws.com",
            "FilterLogEvents",
            {"logGroupName": "/aws/lambda/tenant-authorizer"},
        ),
        ("cloudformation.amazonaws.com", "DescribeStacks", {"stackName": "saas-platform"}),
        ("kms.amazonaws.com", "ListAliases", None),
        ("s3.amazonaws.com", "ListBuckets", {"Host": "s3.amazonaws.com"}),
        ("s3.amazonaws.com", "GetBucketPolicy", {"bucketName": bucket, "policy": ""}),
        ("dynamodb.amazonaws.com", "DescribeTable", {"tableName": table}),
        ("apigateway.amazonaws.com", "GetRestApis", None),
        ("sts.amazonaws.com", "GetCallerIdentity", None),
        ("cloudtrail.amazonaws.com", "LookupEvents", {"maxResults": 50}),
        (
            "ssm.amazonaws.com",
            "GetParameters",
            {"names": ["/saas/prod/feature-flags"], "withDecryption": False},
        ),
    )


class Operators:
    def __init__(self, world: World, ct: CloudTrail) -> None:
        self.world = world
        self.ct = ct
        self.acct = world.spec.account
        self.region = world.spec.region
        self.reads = reads(world.style.ops_bucket, world.style.ops_table)

    def day(self, rng: random.Random, base: int, day: date) -> None:
        weekday = day.weekday() < 5
        self._datadog(rng, base)
        if weekday:
            for i, admin in enumerate(ADMINS):
                if rng.random() < 0.8:
                    self._console(rng, base, admin, i)
            for _ in range(rng.randrange(0, 4)):
                self._deploy(rng, base + (14 + rng.randrange(8)) * 3600 + rng.randrange(3600))
        self._secrets(rng, base)

    def _datadog(self, rng: random.Random, base: int) -> None:
        """A monitoring vendor assumes a read-only role from its own account every 30 minutes."""
        role = self.world.roles["DatadogIntegrationRole"]
        caller = {
            "type": "AWSAccount",
            "principalId": "AROAWR5ZF7QY4EXAMPLE:datadog-integration",
            "accountId": DATADOG_ACCOUNT,
        }
        for slot in range(48):
            ts = base + slot * 1800 + rng.randrange(60)
            _, akid = self.ct.assume_role(
                rng, ts, caller, "44.192.28.46", DATADOG_UA, role, f"datadog-{ts}", duration=None
            )
            ident = self.ct.assumed(role, f"datadog-{ts}", akid, ts)
            for src, name, params in rng.sample(self.reads[:11], 3):
                ts += rng.randrange(1, 5)
                self.ct.management(rng, ts, ident, "44.192.28.46", DATADOG_UA, src, name, params)

    def _console(self, rng: random.Random, base: int, admin: str, i: int) -> None:
        """An SSO admin signs in (US East office hours) and clicks around the console."""
        role = self.world.roles[
            "AWSReservedSSO_AdministratorAccess_5f3c2a1b9d8e7f60"
            if i == 0
            else "AWSReservedSSO_ReadOnlyAccess_0c4d6e8f1a2b3c4d"
        ]
        ip = self.world.operator_ips[i]
        ts = base + (13 + rng.randrange(9)) * 3600 + rng.randrange(3600)
        ident = self.ct.assumed(role, admin, ids.access_key(rng), ts, mfa=True)
        self.ct.management(
            rng,
            ts,
            ident,
            ip,
            BROWSER_UA,
            "signin.amazonaws.com",
            "ConsoleLogin",
            None,
            response={"ConsoleLogin": "Success"},
            read_only=False,
            event_type="AwsConsoleSignIn",
            extra={"MobileVersion": "No", "MFAUsed": "Yes"},
            version="1.08",
        )
        for _ in range(rng.randrange(8, 30)):
            ts += int(rng.expovariate(1 / 40)) + 1
            src, name, params = rng.choice(self.reads)
            err = None
            if name == "GetBucketPolicy" and i > 0:
                err = ("AccessDenied", "Access Denied")
            self.ct.management(rng, ts, ident, ip, CONSOLE_UA, src, name, params, error=err)

    def _deploy(self, rng: random.Random, ts: int) -> None:
        """GitHub Actions deploys a change through CloudFormation (OIDC web identity)."""
        role = self.world.roles["github-actions-deploy"]
        sub = "repo:acme-saas/platform:ref:refs/heads/main"
        provider = f"arn:aws:iam::{self.acct}:oidc-provider/token.actions.githubusercontent.com"
        caller = {
            "type": "WebIdentityUser",
            "principalId": f"{provider}:sts.amazonaws.com:{sub}",
            "userName": sub,
            "identityProvider": provider,
        }
        ip = f"4.{rng.randrange(148, 156)}.{rng.randrange(256)}.{rng.randrange(1, 255)}"
        akid = ids.access_key(rng)
        self.ct.management(
            rng,
            ts,
            caller,
            ip,
            GITHUB_UA,
            "sts.amazonaws.com",
            "AssumeRoleWithWebIdentity",
            {"roleArn": role.arn, "roleSessionName": "GitHubActions", "durationSeconds": 3600},
            response={
                "credentials": {
                    "accessKeyId": akid,
                    "sessionToken": ids.session_token(rng),
                    "expiration": sts_expiration(ts + 3600),
                },
                "subjectFromWebIdentityToken": sub,
                "provider": provider,
                "audience": "sts.amazonaws.com",
            },
            resources=[{"accountId": self.acct, "type": "AWS::IAM::Role", "ARN": role.arn}],
            version="1.08",
        )
        ident = self.ct.assumed(role, "GitHubActions", akid, ts)
        stack = {"stackName": "saas-platform"}
        steps: list[tuple[str, str, dict[str, Any] | None, bool]] = [
            ("cloudformation.amazonaws.com", "DescribeStacks", stack, True),
            (
                "cloudformation.amazonaws.com",
                "CreateChangeSet",
                {**stack, "changeSetName": f"deploy-{ts}"},
                False,
            ),
            (
                "cloudformation.amazonaws.com",
                "DescribeChangeSet",
                {**stack, "changeSetName": f"deploy-{ts}"},
                True,
            ),
            (
                "cloudformation.amazonaws.com",
                "ExecuteChangeSet",
                {**stack, "changeSetName": f"deploy-{ts}"},
                False,
            ),
        ]
        for src, name, params, ro in steps:
            ts += rng.randrange(2, 30)
            self.ct.management(rng, ts, ident, ip, GITHUB_UA, src, name, params, read_only=ro)
        # CloudFormation then acts on its own: service-invoked calls show the service's name.
        for fn in ("tenant-api-backend", "tenant-authorizer"):
            ts += rng.randrange(5, 40)
            cfn = dict(ident)
            cfn["invokedBy"] = "cloudformation.amazonaws.com"
            self.ct.management(
                rng,
                ts,
                cfn,
                "cloudformation.amazonaws.com",
                "cloudformation.amazonaws.com",
                "lambda.amazonaws.com",
                "UpdateFunctionCode20150331v2",
                {"functionName": fn, "publish": True},
                response={"functionName": fn, "version": "$LATEST"},
                read_only=False,
            )

    def _secrets(self, rng: random.Random, base: int) -> None:
        """Backend Lambdas fetch their secrets and decrypt with KMS a few times an hour."""
        for h in range(24):
            ts = base + h * 3600 + rng.randrange(3600)
            ident: Identity = self.ct.function_identity(rng, "tenant-api-backend", ts)
            self.ct.management(
                rng,
                ts,
                ident,
                self.world.lambda_ips[0],
                "AWS Internal",
                "secretsmanager.amazonaws.com",
                "GetSecretValue",
                {"secretId": "prod/tenant-api/jwt-signing-key"},
            )
            kms_ident = dict(ident)
            kms_ident["invokedBy"] = "secretsmanager.amazonaws.com"
            self.ct.management(
                rng,
                ts,
                kms_ident,
                "secretsmanager.amazonaws.com",
                "secretsmanager.amazonaws.com",
                "kms.amazonaws.com",
                "Decrypt",
                {
                    "encryptionAlgorithm": "SYMMETRIC_DEFAULT",
                    "encryptionContext": {
                        "SecretARN": (
                            f"arn:aws:secretsmanager:{self.region}:{self.acct}:{JWT_KEY_ARN_TAIL}"
                        )
                    },
                },
                resources=[
                    {
                        "accountId": self.acct,
                        "type": "AWS::KMS::Key",
                        "ARN": f"arn:aws:kms:{self.region}:{self.acct}:{KMS_KEY}",
                    }
                ],
            )
