-- Statistics over the scoring views: seeded bootstrap intervals (see store/stats.py).
SELECT 1;
