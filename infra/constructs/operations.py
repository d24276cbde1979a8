"""Alarms, the dashboard and the (optional) alarm topic."""

from __future__ import annotations

from collections.abc import Mapping

from aws_cdk import Duration
from aws_cdk import aws_apigateway as apigw
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as cw_actions
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subscriptions
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from infra.constructs import pascal
from infra.nag import suppress

PERIOD = Duration.minutes(5)
# A stream consumer falling behind: a write must be queryable in the lake within 5 minutes, so an
# iterator age (time since the newest record of a batch was written) of 5 minutes is already late.
ITERATOR_AGE_LIMIT = Duration.minutes(5)
_AT_LEAST = cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD
# Operations the api (and later import) code performs; DynamoDB reports throttles/system errors per
# operation (a CloudWatch math expression accepts at most 10 metrics).
TABLE_OPERATIONS = [
    dynamodb.Operation.GET_ITEM,
    dynamodb.Operation.BATCH_GET_ITEM,
    dynamodb.Operation.QUERY,
    dynamodb.Operation.PUT_ITEM,
    dynamodb.Operation.UPDATE_ITEM,
    dynamodb.Operation.DELETE_ITEM,
    dynamodb.Operation.BATCH_WRITE_ITEM,
    dynamodb.Operation.TRANSACT_WRITE_ITEMS,
    dynamodb.Operation.TRANSACT_GET_ITEMS,
]


class Operations(Construct):
    """Every alarm fires on the first bad datapoint (5-minute sums >= 1, DLQ depth > 0, stream iterator
    age over ITERATOR_AGE_LIMIT): fhirlake is meant to run error-free, so any 5xx, function error,
    throttle, dead letter or lagging stream consumer deserves a look.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        dashboard_name: str,
        api: apigw.RestApi,
        functions: Mapping[str, lambda_.IFunction],
        dead_letter_queues: Mapping[str, sqs.IQueue],
        stream_consumers: Mapping[str, lambda_.IFunction],
        athena_workgroup: str,
        table: dynamodb.ITable,
        key: kms.IKey,
        alarm_topic: bool,
        alarm_email: str | None,
    ) -> None:
        super().__init__(scope, construct_id)
        self.topic: sns.Topic | None = None
        if alarm_topic or alarm_email:
            self.topic = sns.Topic(self, "AlarmTopic", display_name="fhirlake alarms", master_key=key,
                                   enforce_ssl=True)  # fmt: skip
            if alarm_email:
                self.topic.add_subscription(subscriptions.EmailSubscription(alarm_email))

        self.alarms: list[cloudwatch.Alarm] = []
        api_5xx = api.metric_server_error(period=PERIOD, statistic="Sum")
        self._alarm("Api5xx", api_5xx, "API Gateway returned 5xx responses")
        widgets: list[cloudwatch.IWidget] = [
            cloudwatch.GraphWidget(
                title="API requests and errors",
                left=[api.metric_count(period=PERIOD, statistic="Sum"),
                      api.metric_client_error(period=PERIOD, statistic="Sum"), api_5xx],
                width=12,
            ),
            cloudwatch.GraphWidget(
                title="API latency (p50, p99)",
                left=[api.metric_latency(period=PERIOD, statistic="p50"),
                      api.metric_latency(period=PERIOD, statistic="p99")],
                width=12,
            ),
        ]  # fmt: skip
        for role, function in functions.items():
            errors = function.metric_errors(period=PERIOD, statistic="Sum")
            throttles = function.metric_throttles(period=PERIOD, statistic="Sum")
            self._alarm(f"{pascal(role)}FunctionErrors", errors, f"{role} Lambda function errors")
            self._alarm(f"{pascal(role)}FunctionThrottles", throttles, f"{role} Lambda throttled")
            widgets.append(
                cloudwatch.GraphWidget(
                    title=f"{role} function",
                    left=[function.metric_invocations(period=PERIOD, statistic="Sum"), errors, throttles],
                    right=[function.metric_duration(period=PERIOD, statistic="p99")],
                    width=12,
                )
            )
        for role, dlq in dead_letter_queues.items():
            depth = dlq.metric_approximate_number_of_messages_visible(period=PERIOD, statistic="Maximum")
            self._alarm(
                f"{pascal(role)}DeadLetters",
                depth,
                f"messages in the {role} dead-letter queue",
                comparison=cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
                threshold=0,
            )
            widgets.append(
                cloudwatch.GraphWidget(title=f"{role} dead-letter queue depth", left=[depth], width=12)
            )
        for role, function in stream_consumers.items():
            age = function.metric("IteratorAge", period=PERIOD, statistic="Maximum")
            self._alarm(
                f"{pascal(role)}IteratorAge",
                age,
                f"the {role} function lags behind the table stream",
                comparison=cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
                threshold=ITERATOR_AGE_LIMIT.to_milliseconds(),
            )
            widgets.append(
                cloudwatch.GraphWidget(title=f"{role} stream iterator age (ms)", left=[age], width=12)
            )
        # Athena bills per byte scanned: the workgroup publishes ProcessedBytes per query state and type,
        # summed here over all of them (a SEARCH, so no per-dimension metric has to be listed).
        scanned = cloudwatch.MathExpression(
            expression=(
                'SUM(SEARCH(\'{AWS/Athena,QueryState,QueryType,WorkGroup} MetricName="ProcessedBytes" '
                f"WorkGroup=\"{athena_workgroup}\"', 'Sum', {int(PERIOD.to_seconds())}))"
            ),
            label="bytes scanned",
            period=PERIOD,
        )
        widgets.append(cloudwatch.GraphWidget(title="Athena bytes scanned", left=[scanned], width=12))
        throttled = table.metric_throttled_requests_for_operations(
            operations=TABLE_OPERATIONS, period=PERIOD, statistic="Sum", label="throttled requests"
        )
        system_errors = table.metric_system_errors_for_operations(
            operations=TABLE_OPERATIONS, period=PERIOD, statistic="Sum", label="system errors"
        )
        self._alarm("TableThrottledRequests", throttled, "DynamoDB throttled requests on the resource table")
        self._alarm("TableSystemErrors", system_errors, "DynamoDB system errors on the resource table")
        # Separate graphs: both expressions use the same per-operation metric ids.
        widgets.append(
            cloudwatch.GraphWidget(title="DynamoDB throttled requests", left=[throttled], width=12)
        )
        widgets.append(cloudwatch.GraphWidget(title="DynamoDB system errors", left=[system_errors], width=12))

        self.dashboard = cloudwatch.Dashboard(self, "Dashboard", dashboard_name=dashboard_name)
        self.dashboard.add_widgets(cloudwatch.AlarmStatusWidget(title="Alarms", alarms=self.alarms, width=24))
        for index in range(0, len(widgets), 2):
            self.dashboard.add_widgets(*widgets[index : index + 2])

    def _alarm(
        self,
        construct_id: str,
        metric: cloudwatch.IMetric,
        description: str,
        *,
        comparison: cloudwatch.ComparisonOperator = _AT_LEAST,
        threshold: float = 1,
    ) -> None:
        alarm = cloudwatch.Alarm(
            self,
            construct_id,
            alarm_description=f"fhirlake: {description}",
            metric=metric,
            threshold=threshold,
            comparison_operator=comparison,
            evaluation_periods=1,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
        )
        if self.topic is not None:
            alarm.add_alarm_action(cw_actions.SnsAction(self.topic))
            alarm.add_ok_action(cw_actions.SnsAction(self.topic))
        else:
            suppress(
                alarm,
                ("HIPAA.Security-CloudWatchAlarmAction", "The deployer turned the alarm topic off "
                 "(-c alarmTopic=false), e.g. to route alarms through an existing organisation-wide setup; "
                 "the alarm still shows on the dashboard."),
            )  # fmt: skip
        self.alarms.append(alarm)
