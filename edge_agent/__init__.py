"""The gateway service: reads meters (Modbus TCP/RTU, MQTT-native) and publishes batches."""
