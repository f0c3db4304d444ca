"""Run only by tests/integration/test_redis_hygiene.py, as a pytest run of its own: a test that leaves a
key with no expiry behind, as a scheduled job does."""


def test_leaves_a_scheduled_job(redis):
    redis.zadd("rq:scheduled:default", {"left-behind": 1})
    redis.hset("rq:job:left-behind", "status", "scheduled")
    assert redis.dbsize() == 2
