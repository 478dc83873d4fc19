"""HTTP API of the reports: aggregate statistics of the caller's project."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework.response import Response
from rest_framework.views import APIView

from reports.selectors import project_stats, stats_window
from reports.serializers import StatsQuerySerializer, StatsSerializer
from swarmsite.permissions import ProjectScopedMixin


class StatsView(ProjectScopedMixin, APIView):
    """`GET /api/v1/stats/?since=&until=`: tasks, usage and API traffic."""

    @extend_schema(
        operation_id="stats_retrieve",
        summary="Statistics of the project over a time window",
        description=(
            "Tasks created in the window (counts by current status, completion "
            "rate, durations of the completed ones), tokens and cost of the "
            "messages and agent runs in the window (total, by agent, by model) "
            "and the API requests recorded in the audit log (by endpoint). "
            "The window defaults to the last 24 hours and spans at most "
            "STATS_MAX_WINDOW_DAYS days."
        ),
        parameters=[StatsQuerySerializer],
        responses={200: StatsSerializer},
    )
    def get(self, request):
        query = StatsQuerySerializer.from_query(request.query_params)
        window = stats_window(since=query.get("since"), until=query.get("until"))
        stats = project_stats(project=self.project, window=window)
        return Response(StatsSerializer(stats).data)
