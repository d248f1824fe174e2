"""Energy, water, carbon and cost accounting: counters → consumption → calendar rollups.

``consumption`` turns cumulative registers into interval consumption (rollovers, resets, meter
replacements, gaps, late points); ``rollup`` cuts it into hours, days, months and years of the
park's local clock per meter, workshop, enterprise and park; ``job`` is the analytics
service's rollup job that writes them to InfluxDB; ``steel`` accounts the steel plant's
half year end to end.
"""
