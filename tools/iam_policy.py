"""Writes and checks the IAM documents of cloud_backend/infra: the user policy, the roles' boundary, the template.

    python tools/iam_policy.py write    put the instance-type allow-list (extension/jobs/sagemaker_backend/instances.py, the catalogue
                                        the Train tab shows) into user-policy.json, and the policy into docs/aws.md
    python tools/iam_policy.py check    the static checks below; exit 1 with one line per problem

moto's IAM does not evaluate policies (and has no SimulatePrincipalPolicy), so this is a static checker for the known
ways from an IAM policy to admin (Rhino Security Labs' list: new policy versions, attaching or putting policies,
roles without a boundary, passing a role to a service that runs your code, access keys and login profiles, ...), plus
`allowed()`, a small evaluator of Allow/Deny, wildcards and the condition operators these documents use, so tests
can ask "may this principal do X on Y?" as AWS would answer for these documents.
"""
from __future__ import annotations

import argparse
import fnmatch
import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
INFRA = ROOT / "cloud_backend" / "infra"
USER_POLICY = INFRA / "user-policy.json"
BOUNDARY = INFRA / "role-boundary.json"
TEMPLATE = INFRA / "template.yaml"
AWS_DOC = ROOT / "docs" / "aws.md"  # "AWS setup": shows the user policy as shipped

BOUNDARY_ARN = "arn:aws:iam::${aws:PrincipalAccount}:policy/cloudlora-boundary"
INSTANCE_SID = "CreateTrainingJobsOnCatalogueInstances"
# Actions that take any role the caller may create or change to admin, or give the caller another identity.
ESCALATION = ["iam:CreatePolicy", "iam:CreatePolicyVersion", "iam:SetDefaultPolicyVersion", "iam:DeletePolicy*",
              "iam:Attach*Policy", "iam:PutUserPolicy", "iam:PutGroupPolicy", "iam:CreateAccessKey",
              "iam:CreateLoginProfile", "iam:UpdateLoginProfile", "iam:AddUserToGroup", "iam:CreateUser",
              "iam:DeleteRolePermissionsBoundary", "iam:DeleteUserPermissionsBoundary", "iam:PutUserPermissionsBoundary",
              "iam:CreateServiceLinkedRole", "iam:UploadSSHPublicKey", "iam:CreateServiceSpecificCredential",
              "sts:AssumeRole*", "sts:GetFederationToken"]
# Role changes that must require the boundary (iam:PermissionsBoundary is a condition key of these).
NEEDS_BOUNDARY = ["iam:CreateRole", "iam:PutRolePolicy", "iam:DeleteRolePolicy", "iam:PutRolePermissionsBoundary",
                  "iam:AttachRolePolicy", "iam:DetachRolePolicy"]
# Services that run the caller's code with a role the caller passes; only these two, with bounded roles.
RUNS_CODE_AS_A_ROLE = {"sagemaker.amazonaws.com": ["sagemaker:CreateTrainingJob"],
                       "codebuild.amazonaws.com": ["codebuild:CreateProject", "codebuild:UpdateProject",
                                                   "codebuild:StartBuild"]}
NEVER = ["lambda:*", "ec2:RunInstances", "ecs:RunTask", "glue:*", "datapipeline:*", "batch:*", "states:*",
         "cloudformation:CreateStack", "ssm:*", "sagemaker:CreateNotebookInstance", "sagemaker:CreatePresigned*",
         "sagemaker:CreateProcessingJob", "sagemaker:CreateEndpoint*", "sagemaker:CreateModel",
         "s3:PutBucketPublicAccessBlock", "s3:PutAccountPublicAccessBlock", "s3:PutBucketAcl", "s3:PutObjectAcl",
         "s3:PutObjectVersionAcl", "kms:*", "organizations:*", "account:*"]
# Actions with no resource-level permissions (AWS's Service Authorization Reference), the only ones allowed on "*".
STAR_OK = {"sagemaker:ListTrainingJobs", "servicequotas:ListServiceQuotas", "servicequotas:GetServiceQuota",
           "servicequotas:ListAWSDefaultServiceQuotas", "logs:DescribeLogGroups", "ecr:GetAuthorizationToken",
           "cloudwatch:PutMetricData"}


# --- a small evaluator --------------------------------------------------------------------------------------------

def _list(x) -> list:
    return x if isinstance(x, list) else [x]


def _subst(pattern: str, context: dict) -> str:
    return re.sub(r"\$\{([^}]+)\}", lambda m: str(context.get(m.group(1), m.group(0))), pattern)


def _like(value: str, pattern: str, case: bool = True) -> bool:
    if not case:
        value, pattern = value.lower(), pattern.lower()
    return fnmatch.fnmatchcase(value, pattern.replace("[", "[[]"))


def _condition_holds(conditions: dict, context: dict) -> bool:
    for op, tests in conditions.items():
        for key, wanted in tests.items():
            wanted = [_subst(str(w), context) for w in _list(wanted)]
            have = context.get(key)
            if op == "Null":
                if (have is None) != (wanted[0].lower() == "true"):
                    return False
                continue
            if op.startswith("ForAllValues:"):
                base = op.split(":", 1)[1]
                if not all(_one(base, str(v), wanted) for v in _list(have or [])):
                    return False
                continue
            if op.startswith("ForAnyValue:"):
                base = op.split(":", 1)[1]
                if not any(_one(base, str(v), wanted) for v in _list(have or [])):
                    return False
                continue
            if have is None or not any(_one(op, str(v), wanted) for v in _list(have)):
                return False
    return True


def _one(op: str, value: str, wanted: list[str]) -> bool:
    if op in ("StringEquals", "ArnEquals"):
        return value in wanted
    if op in ("StringLike", "ArnLike"):
        return any(_like(value, w) for w in wanted)
    if op == "StringNotEquals":
        return value not in wanted
    if op == "Bool":
        return value.lower() in [w.lower() for w in wanted]
    raise ValueError(f"condition operator {op} is not known to this checker")


def _matches(statement: dict, action: str, resource: str, context: dict) -> bool:
    if not any(_like(action, a, case=False) for a in _list(statement.get("Action", []))):
        return False
    if not any(_like(resource, _subst(r, context)) for r in _list(statement.get("Resource", []))):
        return False
    return _condition_holds(statement.get("Condition", {}), context)


def allowed(policies, action: str, resource: str, context: dict | None = None) -> bool:
    """Would these identity policies (and boundaries: pass each as its own list) allow the request?

    `policies`: one policy document, or a list of documents that must ALL allow it (a policy and its boundary).
    `context`: condition keys of the request, e.g. {"iam:PermissionsBoundary": ARN, "aws:PrincipalAccount": ID}."""
    context = {"aws:PrincipalAccount": "123456789012", **(context or {})}
    docs = policies if isinstance(policies, list) else [policies]
    for doc in docs:
        statements = _list(doc["Statement"])
        if any(s["Effect"] == "Deny" and _matches(s, action, resource, context) for s in statements):
            return False
        if not any(s["Effect"] == "Allow" and _matches(s, action, resource, context) for s in statements):
            return False
    return True


# --- the documents ------------------------------------------------------------------------------------------------

def load_json(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def load_template(path: Path = TEMPLATE) -> dict:
    from cfnlint.decode import decode

    template, problems = decode(str(path))
    if problems:
        raise ValueError(f"{path}: {problems}")
    return template


def catalogue_instance_types() -> list[str]:
    sys.path.insert(0, str(ROOT))
    try:
        from cloudlora.jobs.sagemaker_backend import instances
    finally:
        sys.path.pop(0)
    return instances.sagemaker_names()


def _actions(statement: dict) -> list[str]:
    return [a.lower() for a in _list(statement.get("Action", []))]


def _hits(actions: list[str], patterns: list[str]) -> list[str]:
    """The patterns some of `actions` (which may hold wildcards themselves) could grant."""
    out = []
    for p in patterns:
        pl = p.lower()
        if any(_like(a, pl) or _like(pl, a) for a in actions):
            out.append(p)
    return out


def check_user_policy(doc: dict, instance_types: list[str]) -> list[str]:
    problems = []
    allows = [s for s in doc["Statement"] if s["Effect"] == "Allow"]
    for s in doc["Statement"]:
        if "NotAction" in s or "NotResource" in s or "NotPrincipal" in s:
            problems.append(f"{s.get('Sid')}: NotAction/NotResource grant more than they say")
    for s in allows:
        sid, acts = s.get("Sid", "?"), _actions(s)
        if any(a == "*" or a.endswith(":*") for a in acts):
            problems.append(f"{sid}: a whole service ({acts}) is allowed")
        for hit in _hits(acts, ESCALATION + NEVER):
            problems.append(f"{sid}: allows {hit}, a way past the stack's purpose")
        if "*" in _list(s["Resource"]):
            extra = sorted(set(acts) - {a.lower() for a in STAR_OK})
            if extra:
                problems.append(f"{sid}: {extra} on every resource")
        needs = _hits(acts, NEEDS_BOUNDARY)
        if needs:
            cond = s.get("Condition", {})
            value = (cond.get("StringEquals") or cond.get("ArnEquals") or {}).get("iam:PermissionsBoundary")
            if value != BOUNDARY_ARN:
                problems.append(f"{sid}: {needs} without the condition iam:PermissionsBoundary = {BOUNDARY_ARN}")
        if "iam:passrole" in acts:
            service = (s.get("Condition", {}).get("StringEquals") or {}).get("iam:PassedToService")
            if service not in RUNS_CODE_AS_A_ROLE:
                problems.append(f"{sid}: iam:PassRole without iam:PassedToService limited to SageMaker or CodeBuild")
            for role in _list(s["Resource"]):
                name, probe = role.rsplit("/", 1)[-1], role.replace("*", "x")
                # a role one may pass must not be one the user may create or change without the boundary
                if any(allowed(doc, a, probe, {}) for a in NEEDS_BOUNDARY):
                    problems.append(f"{sid}: passes roles {name} that the user may create or change without the "
                                    "boundary")
        if "sagemaker:createtrainingjob" in acts:
            cond = s.get("Condition", {})
            listed = (cond.get("ForAllValues:StringEquals") or {}).get("sagemaker:InstanceTypes")
            if listed is None or (cond.get("Null") or {}).get("sagemaker:InstanceTypes") != "false":
                problems.append(f"{sid}: CreateTrainingJob without the instance-type allow-list "
                                "(ForAllValues:StringEquals + Null false on sagemaker:InstanceTypes)")
            elif sorted(_list(listed)) != sorted(instance_types):
                problems.append(f"{sid}: the instance types {sorted(_list(listed))} are not the catalogue's "
                                f"{sorted(instance_types)}: run `python tools/iam_policy.py write`")
    problems += _outside_the_stack(doc)
    boundary = "arn:aws:iam::123456789012:policy/cloudlora-boundary"
    for action in ("iam:CreatePolicyVersion", "iam:DeletePolicy", "iam:SetDefaultPolicyVersion"):
        if allowed(doc, action, boundary):
            problems.append(f"the user policy may change the boundary itself ({action})")
    for action in ("iam:DeleteRolePermissionsBoundary", "iam:AttachRolePolicy"):
        if not _denied(doc, action, "arn:aws:iam::123456789012:role/cloudlora-x"):
            problems.append(f"no explicit Deny of {action} on cloudlora roles")
    for action in ("s3:PutBucketPublicAccessBlock", "s3:PutBucketAcl"):
        if not _denied(doc, action, "arn:aws:s3:::cloudlora-123456789012-us-east-1"):
            problems.append(f"no explicit Deny of {action} on the cloudlora buckets")
    return problems


# Who may assume a role, who may read the bucket: only the stack (CloudFormation calling with the user's
# credentials, aws:CalledVia) may change them. Directly, the user could make the SageMaker or CodeBuild role
# assumable by "*" or another account (then read every photo, push a poisoned trainer image), or grant another
# account the bucket (Block Public Access does not count that as public).
VIA_STACK = "cloudformation.amazonaws.com"
TRUST_ACTIONS = ["iam:UpdateAssumeRolePolicy", "iam:CreateRole"]
BUCKET_POLICY_ACTIONS = ["s3:PutBucketPolicy", "s3:DeleteBucketPolicy"]
TAG_ACTIONS = ["iam:TagRole", "iam:UntagRole"]
BOUNDARY_TAG = "iam:ResourceTag/cloudlora:boundary"  # the stack tags the roles it creates (with the boundary)
ROLE_PROBES = ["arn:aws:iam::123456789012:role/cloudlora-sagemaker-us-east-1",
               "arn:aws:iam::123456789012:role/cloudlora-codebuild-us-east-1",
               "arn:aws:iam::123456789012:role/cloudlora-sagemaker-made-by-someone-else"]
BUCKET_PROBE = "arn:aws:s3:::cloudlora-123456789012-us-east-1"


def _outside_the_stack(doc: dict) -> list[str]:
    """The escalation paths that go around the stack: each one a request the user could send directly (no
    aws:CalledVia) that the policy allows."""
    problems = []
    direct = {"iam:PermissionsBoundary": "arn:aws:iam::123456789012:policy/cloudlora-boundary"}
    for role in ROLE_PROBES:
        name = role.rsplit("/", 1)[1]
        for action in TRUST_ACTIONS:
            if allowed(doc, action, role, direct):
                problems.append(f"the user may call {action} on {name} directly (not only through the stack, "
                                f"aws:CalledVia = {VIA_STACK}): it may make the role assumable by anyone")
        for action in TAG_ACTIONS:
            if allowed(doc, action, role, direct):
                problems.append(f"the user may call {action} on {name} directly: it may forge the tag "
                                f"{BOUNDARY_TAG.split('/', 1)[1]} that iam:PassRole relies on")
        for service in RUNS_CODE_AS_A_ROLE:
            if allowed(doc, "iam:PassRole", role, {"iam:PassedToService": service}):
                problems.append(f"iam:PassRole of {name} to {service} does not require the role to carry the "
                                f"boundary ({BOUNDARY_TAG} = cloudlora-boundary)")
    for action in BUCKET_POLICY_ACTIONS:
        if allowed(doc, action, BUCKET_PROBE):
            problems.append(f"the user may call {action} on the bucket directly (not only through the stack, "
                            f"aws:CalledVia = {VIA_STACK}): it may grant another account the photos")
    stack = "arn:aws:cloudformation:us-east-1:123456789012:stack/cloudlora/x"
    for kind in ("AWS::IAM::Role", "AWS::S3::Bucket"):
        if allowed(doc, "cloudformation:CreateChangeSet", stack, {"cloudformation:ImportResourceTypes": [kind]}):
            problems.append(f"the stack may import an existing {kind}, and then change its trust or policy through "
                            "the stack (deny cloudformation:CreateChangeSet with cloudformation:ImportResourceTypes)")
    return problems


def _denied(doc: dict, action: str, resource: str) -> bool:
    ctx = {"aws:PrincipalAccount": "123456789012"}
    return any(s["Effect"] == "Deny" and _matches(s, action, resource, ctx) for s in doc["Statement"])


def check_boundary(doc: dict) -> list[str]:
    problems = []
    for s in doc["Statement"]:
        sid, acts = s.get("Sid", "?"), _actions(s)
        if s["Effect"] != "Allow" or "NotAction" in s or "NotResource" in s:
            problems.append(f"boundary {sid}: only plain Allow statements")
        services = {a.split(":", 1)[0] for a in acts}
        if services - {"s3", "ecr", "logs", "cloudwatch"} or any(a.endswith(":*") or a == "*" for a in acts):
            problems.append(f"boundary {sid}: {acts} is beyond S3, ECR pulls/pushes, logs and metrics")
        for r in _list(s["Resource"]):
            if r == "*":
                if set(acts) - {a.lower() for a in STAR_OK}:
                    problems.append(f"boundary {sid}: {acts} on every resource")
            elif "cloudlora-" not in r and not r.endswith(":repository/pytorch-training") \
                    and "/aws/sagemaker/TrainingJobs" not in r:
                problems.append(f"boundary {sid}: {r} is not one of the stack's resources")
    return problems


def _sub(value, names: dict) -> str:
    """A CloudFormation !Sub / !GetAtt / !Ref value as a plain ARN string for the names given."""
    if isinstance(value, str):
        return value
    if "Fn::Sub" in value:
        text = value["Fn::Sub"] if isinstance(value["Fn::Sub"], str) else value["Fn::Sub"][0]
        return re.sub(r"\$\{([^}]+)\}", lambda m: names.get(m.group(1), m.group(0)), text)
    if "Fn::GetAtt" in value:
        att = value["Fn::GetAtt"]
        return names[".".join(att) if isinstance(att, list) else att]
    if "Ref" in value:
        return names[value["Ref"]]
    raise ValueError(f"cannot read {value}")


STACK_NAMES = {"AWS::Partition": "aws", "AWS::Region": "us-east-1", "AWS::AccountId": "123456789012",
               "Prefix": "cloudlora", "Bucket.Arn": "arn:aws:s3:::cloudlora-123456789012-us-east-1",
               "Bucket": "cloudlora-123456789012-us-east-1", "DlcAccount": "763104351884",
               "Repository.Arn": "arn:aws:ecr:us-east-1:123456789012:repository/cloudlora-trainer",
               "AWS::StackName": "cloudlora"}


def role_policy(role: dict) -> dict:
    """A role's inline policies as one plain policy document (CloudFormation functions resolved for a test stack)."""
    statements = []
    for policy in role["Properties"].get("Policies", []):
        for s in policy["PolicyDocument"]["Statement"]:
            s = dict(s)
            s["Resource"] = [_sub(r, STACK_NAMES) for r in _list(s["Resource"])]
            statements.append(s)
    return {"Version": "2012-10-17", "Statement": statements}


def check_template(template: dict, boundary: dict) -> list[str]:
    problems = []
    resources = template["Resources"]
    for name, res in resources.items():
        if res["Type"] in ("AWS::IAM::ManagedPolicy", "AWS::IAM::Policy", "AWS::IAM::User", "AWS::IAM::Group",
                           "AWS::IAM::AccessKey"):
            problems.append(f"{name}: the stack creates IAM {res['Type']} (roles with the boundary only)")
        if res["Type"] == "AWS::Logs::LogGroup" and "RetentionInDays" not in res["Properties"]:
            problems.append(f"{name}: a log group without retention")
        if res["Type"] != "AWS::IAM::Role":
            continue
        props = res["Properties"]
        if _sub(props.get("PermissionsBoundary", ""), STACK_NAMES) != \
                "arn:aws:iam::123456789012:policy/cloudlora-boundary":
            problems.append(f"{name}: the role has no permissions boundary cloudlora-boundary")
        tags = {t["Key"]: _sub(t["Value"], STACK_NAMES) for t in props.get("Tags", [])}
        if tags.get(BOUNDARY_TAG.split("/", 1)[1]) != "cloudlora-boundary":
            problems.append(f"{name}: the role has no tag {BOUNDARY_TAG.split('/', 1)[1]} = cloudlora-boundary "
                            "(the user policy passes only roles with it)")
        for s in props["AssumeRolePolicyDocument"]["Statement"]:
            cond = s.get("Condition", {})
            if "aws:SourceAccount" not in cond.get("StringEquals", {}) or "aws:SourceArn" not in cond.get("ArnLike", {}):
                problems.append(f"{name}: its trust policy does not check both aws:SourceAccount and aws:SourceArn")
        doc = role_policy(res)
        principal = _list(props["AssumeRolePolicyDocument"]["Statement"][0]["Principal"].get("Service"))
        problems += _check_role_s3(name, doc, "sagemaker.amazonaws.com" in principal)
        for s in doc["Statement"]:
            for action in _list(s["Action"]):
                for r in s["Resource"]:
                    probe = r.replace("*", "x")
                    if not allowed(boundary, action, probe, {"cloudwatch:namespace": "/aws/sagemaker/TrainingJobs"}):
                        problems.append(f"{name}: {action} on {r} is outside the boundary (the role would break)")
    bucket = next(r for r in resources.values() if r["Type"] == "AWS::S3::Bucket")["Properties"]
    if (bucket.get("VersioningConfiguration") or {}).get("Status") != "Enabled":
        problems.append("the bucket has no versioning (its objects are deleted for good)")
    if "PublicAccessBlockConfiguration" in bucket:
        problems.append("the template sets Block Public Access, which needs s3:PutBucketPublicAccessBlock "
                        "(which could also switch it off); new buckets have it on by default")
    return problems


# What the training jobs' role may do in the bucket: read inputs, write outputs; never touch what other jobs, the
# image build or the user rely on. (The role serves every job, so "its job" is the jobs/ prefix.)
_B = "arn:aws:s3:::cloudlora-123456789012-us-east-1/"
SAGEMAKER_MAY = [("s3:GetObject", _B + k) for k in ("models/m/x.safetensors", "datasets/d/10_a/1.png",
                                                     "jobs/j/config/config.toml", "scratch/j/checkpoints/s.pt")] + \
    [("s3:PutObject", _B + k) for k in ("jobs/j/output/j/output/model.tar.gz", "jobs/j/tensorboard/e",
                                        "scratch/j/checkpoints/s.pt")]
SAGEMAKER_MAY_NOT = [(a, _B + k) for a in ("s3:PutObject", "s3:DeleteObject")
                     for k in ("models/m/x.safetensors", "datasets/d/10_a/1.png", "jobs/j/job.json",
                               "jobs/j/config/config.toml", "build/abc.zip", "x")]


def _check_role_s3(name: str, doc: dict, is_sagemaker: bool) -> list[str]:
    problems = []
    if is_sagemaker:
        problems += [f"{name}: cannot {a} {r.split('/', 1)[1]} (training would fail)"
                     for a, r in SAGEMAKER_MAY if not allowed(doc, a, r)]
        problems += [f"{name}: may {a} {r.split('/', 1)[1]}, beyond its job's outputs"
                     for a, r in SAGEMAKER_MAY_NOT if allowed(doc, a, r)]
    else:
        problems += [f"{name}: may {a} {r.split('/', 1)[1]} (the build only reads build/)"
                     for a, r in SAGEMAKER_MAY_NOT + [("s3:PutObject", _B + "build/abc.zip")] if allowed(doc, a, r)]
    return problems


def check(user_policy: dict | None = None, boundary: dict | None = None, template: dict | None = None,
          instance_types: list[str] | None = None) -> list[str]:
    user_policy = user_policy or load_json(USER_POLICY)
    boundary = boundary or load_json(BOUNDARY)
    template = template or load_template()
    instance_types = instance_types if instance_types is not None else catalogue_instance_types()
    return check_user_policy(user_policy, instance_types) + check_boundary(boundary) + \
        check_template(template, boundary)


# --- write --------------------------------------------------------------------------------------------------------

POLICY_BLOCK = re.compile(r"(<summary>The user policy \(cloud_backend/infra/user-policy.json\)</summary>\n\n```json\n)"
                          r".*?(\n```)", re.S)


def write() -> list[Path]:
    doc = load_json(USER_POLICY)
    statement = next(s for s in doc["Statement"] if s.get("Sid") == INSTANCE_SID)
    statement["Condition"]["ForAllValues:StringEquals"]["sagemaker:InstanceTypes"] = catalogue_instance_types()
    text = json.dumps(doc, indent=2) + "\n"
    USER_POLICY.write_text(text, encoding="utf-8")
    doc_text = AWS_DOC.read_text(encoding="utf-8")
    new = POLICY_BLOCK.sub(lambda m: m.group(1) + text.rstrip("\n") + m.group(2), doc_text)
    AWS_DOC.write_text(new, encoding="utf-8")
    return [USER_POLICY, AWS_DOC]


def doc_is_current() -> bool:
    m = POLICY_BLOCK.search(AWS_DOC.read_text(encoding="utf-8"))
    return bool(m) and json.loads(m.group(0).split("```json\n", 1)[1].rsplit("\n```", 1)[0]) == load_json(USER_POLICY)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("command", choices=["write", "check"])
    args = ap.parse_args(argv)
    if args.command == "write":
        for path in write():
            print(f"wrote {path.relative_to(ROOT)}")
        return 0
    problems = check()
    if not doc_is_current():
        problems.append("docs/aws.md's copy of the user policy is out of date: run `python tools/iam_policy.py write`")
    for p in problems:
        print(p)
    print("ok" if not problems else f"{len(problems)} problem(s)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
